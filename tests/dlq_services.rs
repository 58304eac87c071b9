//! The PostgreSQL and Redis dead-letter sinks against the real services
//! (see `common/services.rs`; skipped when absent unless
//! `BUTTRESS_REQUIRE_SERVICES=1`). Each test uses its own table or key
//! prefix and cleans up after itself.

#[path = "common/services.rs"]
mod services;

use buttress::dlq::{
    DeadLetter, DeadLetterSink, PostgresSink, RedisSink, Replayer, Selection, SinkError,
};
use buttress::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error, Classify)]
enum MailError {
    #[error("mailbox unavailable")]
    #[classify(transient)]
    Unavailable,
    #[error(transparent)]
    #[classify(delegate)]
    Resilience(#[from] buttress::Error),
}

fn entry(n: u64) -> DeadLetter {
    let mut e = DeadLetter::new(
        "mail",
        "send",
        serde_json::json!({ "to": format!("user{n}@example.com") }),
        &MailError::Unavailable,
    );
    e.idempotency_key = Some(buttress::dlq::IdempotencyKey::new(format!("mail-{n}")));
    e
}

/// Push, list (oldest first), update, park, remove, idempotent push, and a
/// replay with success, failure and poison.
async fn exercise(sink: &impl DeadLetterSink) {
    let (a, b, c) = (entry(1), entry(2), entry(3));
    for e in [&a, &b, &c] {
        sink.push(e).await.unwrap();
    }
    sink.push(&a).await.unwrap();
    assert_eq!(
        sink.list(Selection::All).await.unwrap(),
        vec![a.clone(), b.clone(), c.clone()]
    );
    assert_eq!(sink.get(&b.id).await.unwrap().as_ref(), Some(&b));
    assert_eq!(sink.get("no-such-id").await.unwrap(), None);
    assert_eq!(
        sink.get(&a.id)
            .await
            .unwrap()
            .unwrap()
            .idempotency_key
            .unwrap()
            .expose(),
        "mail-1",
        "the key is stored for the replay"
    );

    let replayer = Replayer::new(sink).with_max_replays(2);
    let (ok_id, poison_id) = (a.id.clone(), c.id.clone());
    for pass in 0..3 {
        let report = replayer
            .replay(|e| {
                let ok = e.id == ok_id;
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err(MailError::Unavailable)
                    }
                }
            })
            .await
            .unwrap();
        match pass {
            0 => assert_eq!((report.succeeded, report.failed, report.parked), (1, 2, 0)),
            1 => assert_eq!((report.succeeded, report.failed, report.parked), (0, 2, 2)),
            _ => assert_eq!(report.attempted, 0),
        }
    }
    assert_eq!(sink.get(&a.id).await.unwrap(), None, "a success removes");
    let parked = replayer.parked().await.unwrap();
    assert_eq!(parked.len(), 2);
    assert_eq!(parked[0].id, b.id);
    assert_eq!(parked[0].replays, 2);
    assert_eq!(
        parked[0].last_replay_error.as_deref(),
        Some("mailbox unavailable")
    );
    assert!(replayer.unpark(&poison_id).await.unwrap());
    let pending = sink.list(Selection::Pending).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].id.as_str(), pending[0].replays),
        (poison_id.as_str(), 0)
    );

    assert!(sink.remove(&b.id).await.unwrap());
    assert!(!sink.remove(&b.id).await.unwrap());
    assert!(
        !sink.update(&b).await.unwrap(),
        "an update never resurrects"
    );
    assert_eq!(sink.list(Selection::All).await.unwrap().len(), 1);
    assert_eq!(entry(0).class, ErrorClass::Transient);
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("admin connection to PostgreSQL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sink() {
    let Some(url) = services::postgres_url().await else {
        return;
    };
    let table = format!("buttress_dlq_test_{}", std::process::id());
    let admin = admin(&url).await;
    let drop_table = format!("DROP TABLE IF EXISTS \"{table}\"");
    admin.batch_execute(&drop_table).await.unwrap();

    // Many connections creating the table at once on a fresh database.
    let creators: Vec<_> = (0..6)
        .map(|_| {
            let (url, table) = (url.clone(), table.clone());
            tokio::spawn(async move { PostgresSink::connect_with_table(&url, &table).await })
        })
        .collect();
    let mut sinks = Vec::new();
    for creator in creators {
        sinks.push(creator.await.unwrap().expect("concurrent connect"));
    }
    let sink = sinks.pop().unwrap();
    exercise(&sink).await;

    // Concurrent pushes of the same entry from several clones: one row.
    let dup = entry(9);
    let pushes: Vec<_> = sinks
        .into_iter()
        .map(|s| {
            let dup = dup.clone();
            tokio::spawn(async move { s.push(&dup).await })
        })
        .collect();
    for push in pushes {
        push.await.unwrap().unwrap();
    }
    let rows = admin
        .query(
            &format!("SELECT count(*) FROM \"{table}\" WHERE id = $1"),
            &[&dup.id],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 1);

    // A row that is not a dead letter: a clear error naming it.
    admin
        .execute(
            &format!("INSERT INTO \"{table}\" (id, provider, operation, entry) VALUES ('bad-row', 'p', 'o', '{{nope')"),
            &[],
        )
        .await
        .unwrap();
    let error = sink.list(Selection::All).await.unwrap_err();
    assert!(matches!(error, SinkError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("entry bad-row"), "{error}");

    admin.batch_execute(&drop_table).await.unwrap();
}

#[tokio::test]
async fn postgres_sink_reports_an_unreachable_database() {
    let sink = PostgresSink::connect_lazy("postgres://app:hunter2@127.0.0.1:1/none")
        .unwrap()
        .with_timeout(std::time::Duration::from_secs(2));
    let error = sink.push(&entry(1)).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SinkError::Unavailable { .. }), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("127.0.0.1:1"), "{message}");
}

#[tokio::test]
async fn redis_sink() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    let prefix = format!("buttress:dlq-test:{}:", std::process::id());
    let sink = RedisSink::connect(&url)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    exercise(&sink).await;

    // The stream carries the dead letters for other consumers.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let length: u64 = redis::cmd("XLEN")
        .arg(sink.stream_key())
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(length, 1, "removed entries are deleted from the stream");

    // A stored value that is not a dead letter: a clear error naming it.
    let left = sink.list(Selection::All).await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}entries"))
        .arg(&left[0].id)
        .arg("{nope")
        .query_async(&mut connection)
        .await
        .unwrap();
    let error = sink.list(Selection::All).await.unwrap_err();
    assert!(matches!(error, SinkError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains(&left[0].id), "{error}");

    let _: () = redis::cmd("DEL")
        .arg(sink.stream_key())
        .arg(format!("{prefix}entries"))
        .arg(format!("{prefix}index"))
        .query_async(&mut connection)
        .await
        .unwrap();
}
