//! The `dlq` operator command, run as a binary on a file sink.

use std::path::{Path, PathBuf};
use std::process::Command;

use buttress::dlq::{DeadLetter, DeadLetterSink, FileSink, IdempotencyKey, Selection};

fn dlq(file: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dlq"))
        .arg("--file")
        .arg(file)
        .args(args)
        .output()
        .expect("run dlq");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn temp_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("buttress-dlq-cli-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[tokio::test]
async fn list_show_export_count_and_purge() {
    let path = temp_file();
    let sink = FileSink::open(&path).await.unwrap();
    let failure = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let mut entries = Vec::new();
    for n in 0..3 {
        let mut e = DeadLetter::new("sms", "send", serde_json::json!({ "n": n }), &failure);
        e.idempotency_key = Some(IdempotencyKey::new(format!("secret-{n}")));
        if n == 2 {
            e.parked = true;
            e.replays = 5;
            e.last_replay_error = Some("still refused".into());
        }
        sink.push(&e).await.unwrap();
        entries.push(e);
    }
    drop(sink);

    let (ok, out, _) = dlq(&path, &["list"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(
        out.contains(&entries[0].id) && out.contains("sms/send"),
        "{out}"
    );
    assert!(out.ends_with("3 entries\n"), "{out}");
    let (_, out, _) = dlq(&path, &["list", "--parked"]);
    assert!(
        out.contains(&entries[2].id) && out.contains("parked"),
        "{out}"
    );
    assert!(out.ends_with("1 entry\n"), "{out}");

    let (ok, out, _) = dlq(&path, &["show", &entries[1].id]);
    assert!(ok);
    assert!(out.contains("\"n\": 1"), "{out}");
    assert!(!out.contains("secret-1"), "keys are hashed: {out}");
    assert!(
        out.contains(&entries[1].idempotency_key.as_ref().unwrap().hash()),
        "{out}"
    );
    let (ok, _, err) = dlq(&path, &["show", "nope"]);
    assert!(!ok);
    assert!(err.contains("no dead letter with id nope"), "{err}");

    let (ok, out, _) = dlq(&path, &["export"]);
    assert!(ok);
    let exported: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(exported.len(), 3);
    assert!(!out.contains("secret-"), "{out}");
    let (_, out, _) = dlq(&path, &["export", "--pending", "--with-keys"]);
    let exported: Vec<DeadLetter> = serde_json::from_str(&out).unwrap();
    assert_eq!(exported, entries[..2].to_vec(), "a faithful export");

    let (ok, out, _) = dlq(&path, &["replay-count"]);
    assert!(ok);
    assert!(
        out.contains("replays=5  parked  last error: still refused"),
        "{out}"
    );
    assert!(
        out.ends_with("3 entries: 2 pending, 1 parked, 5 failed replay(s)\n"),
        "{out}"
    );

    let (ok, _, err) = dlq(&path, &["purge"]);
    assert!(!ok);
    assert!(err.contains("purge what?"), "{err}");
    let (ok, out, _) = dlq(&path, &["purge", "--parked"]);
    assert!(ok);
    assert_eq!(out, "purged 1 entry\n");
    let (ok, out, _) = dlq(&path, &["purge", &entries[0].id]);
    assert!(ok);
    assert_eq!(out, "purged 1 entry\n");

    let left = FileSink::open(&path).await.unwrap();
    assert_eq!(
        left.list(Selection::All).await.unwrap(),
        vec![entries[1].clone()]
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().count(),
        1,
        "purging compacts the file"
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn it_needs_exactly_one_store() {
    let output = Command::new(env!("CARGO_BIN_EXE_dlq"))
        .arg("list")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(
        err.contains("--file") && err.contains("--postgres"),
        "{err}"
    );
}

#[tokio::test]
async fn it_reads_postgres_too() {
    let url = std::env::var("BUTTRESS_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let table = format!("buttress_dlq_cli_{}", std::process::id());
    let Ok(sink) = buttress::dlq::PostgresSink::connect_with_table(&url, &table).await else {
        assert!(
            std::env::var("BUTTRESS_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "PostgreSQL is required but unreachable at {url}"
        );
        eprintln!("skipped: PostgreSQL is not reachable at {url}");
        return;
    };
    let failure = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let entry = DeadLetter::new(
        "maps",
        "geocode",
        serde_json::json!({ "q": "Paris" }),
        &failure,
    );
    sink.push(&entry).await.unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dlq"))
            .args(["--postgres", &url, "--table", &table])
            .args(args)
            .output()
            .unwrap()
    };
    let listed = run(&["list"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&entry.id));
    let purged = run(&["purge", "--all"]);
    assert_eq!(String::from_utf8_lossy(&purged.stdout), "purged 1 entry\n");
    assert!(sink.list(Selection::All).await.unwrap().is_empty());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS \"{table}\""))
        .await
        .unwrap();
}
