//! The `dlq` operator command, run as a binary on file, PostgreSQL and
//! Redis sinks. Tests that need PostgreSQL or Redis skip with one line when
//! the service is down, unless `BUTTRESS_REQUIRE_SERVICES=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use buttress::dlq::{DeadLetter, DeadLetterSink, FileSink, IdempotencyKey, RedisSink, Selection};

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

/// Run `dlq` with `args`: its exit code, standard output and error.
fn dlq_args(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args(args)
        .output()
        .expect("run dlq");
    (
        status.code().expect("dlq exited"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn temp_file_named(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "buttress-dlq-cli-{}-{name}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn temp_file() -> PathBuf {
    temp_file_named("main")
}

fn required() -> bool {
    std::env::var("BUTTRESS_REQUIRE_SERVICES").as_deref() == Ok("1")
}

fn letter(n: u32, parked: bool) -> DeadLetter {
    let failure = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let mut e = DeadLetter::new("sms", "send", serde_json::json!({ "n": n }), &failure);
    e.idempotency_key = Some(IdempotencyKey::new(format!("secret-{n}")));
    if parked {
        e.parked = true;
        e.replays = 5;
        e.last_replay_error = Some("still refused".into());
    }
    e
}

async fn file_with(path: &Path, entries: &[DeadLetter]) {
    let sink = FileSink::open(path).await.unwrap();
    for e in entries {
        sink.push(e).await.unwrap();
    }
}

async fn all_in(path: &Path) -> Vec<DeadLetter> {
    FileSink::open(path)
        .await
        .unwrap()
        .list(Selection::All)
        .await
        .unwrap()
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

#[test]
fn a_missing_file_is_a_usage_error() {
    let path = temp_file_named("missing");
    let shown = path.display().to_string();
    for args in [&["list"][..], &["purge", "--all"], &["unpark", "--all"]] {
        let (code, out, err) = dlq_args(&[&["--file", shown.as_str()][..], args].concat());
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(out, "", "no `0 entries`");
        assert!(
            err.contains(&format!(
                "no dead-letter file at {shown}: check the path (the application creates it on the first dead letter)"
            )),
            "{err}"
        );
    }
    assert!(!path.exists(), "dlq does not create the file it reads");
}

#[test]
fn the_help_documents_the_exit_codes() {
    let (code, out, _) = dlq_args(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Exit codes:"), "{out}");
    assert!(out.contains("2  usage or input error"), "{out}");
    let (code, _, _) = dlq_args(&["--file", "x", "--table", "t", "list"]);
    assert_eq!(code, 2, "clap's usage errors exit with 2 too");
}

#[tokio::test]
async fn unpark_puts_parked_entries_back_in_line() {
    let path = temp_file_named("unpark");
    let entries = [letter(0, false), letter(1, true), letter(2, true)];
    file_with(&path, &entries).await;

    let (ok, out, err) = dlq(&path, &["unpark", &entries[1].id]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!(
            "unparked {}  sms/send  replays=5 -> 0  last error: still refused\nunparked 1 entry\n",
            entries[1].id
        )
    );
    let (_, out, _) = dlq(&path, &["list", "--pending"]);
    assert!(out.contains(&entries[1].id), "{out}");
    assert!(out.ends_with("2 entries\n"), "{out}");
    let unparked = FileSink::open(&path)
        .await
        .unwrap()
        .get(&entries[1].id)
        .await
        .unwrap()
        .unwrap();
    assert!(!unparked.parked);
    assert_eq!(unparked.replays, 0);
    assert_eq!(
        unparked.last_replay_error.as_deref(),
        Some("still refused"),
        "kept for reference"
    );

    let (ok, out, _) = dlq(&path, &["unpark", &entries[0].id]);
    assert!(ok);
    assert_eq!(
        out,
        format!(
            "{} is not parked; left as it is\nunparked 0 entries\n",
            entries[0].id
        )
    );

    let (code, out, err) = dlq_args(&[
        "--file",
        path.to_str().unwrap(),
        "unpark",
        &entries[2].id,
        "nope",
    ]);
    assert_eq!(code, 2);
    assert_eq!(out, "");
    assert!(err.contains("no dead letter with id nope"), "{err}");
    assert!(
        FileSink::open(&path)
            .await
            .unwrap()
            .get(&entries[2].id)
            .await
            .unwrap()
            .unwrap()
            .parked,
        "an unknown id changes nothing"
    );

    let (ok, out, _) = dlq(&path, &["unpark", "--all"]);
    assert!(ok);
    assert!(out.ends_with("unparked 1 entry\n"), "{out}");
    assert!(all_in(&path).await.iter().all(|e| !e.parked));
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn replay_copies_or_moves_entries_into_another_file() {
    let from = temp_file_named("replay-from");
    let to = temp_file_named("replay-to");
    let entries = [letter(0, false), letter(1, true), letter(2, false)];
    file_with(&from, &entries).await;

    let (ok, out, err) = dlq(&from, &["replay", "--to-file", to.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.ends_with("copied 2 entries\n"), "{out}");
    assert_eq!(
        all_in(&from).await,
        entries.to_vec(),
        "a copy keeps the source"
    );
    assert_eq!(
        all_in(&to).await,
        vec![entries[0].clone(), entries[2].clone()],
        "pending entries by default, faithfully (keys included)"
    );

    let (ok, out, err) = dlq(
        &from,
        &[
            "replay",
            "--all",
            "--remove",
            "--to-file",
            to.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.ends_with("moved 3 entries\n"), "{out}");
    assert_eq!(all_in(&from).await, Vec::new());
    assert_eq!(
        std::fs::read_to_string(&from).unwrap(),
        "",
        "the source file is compacted"
    );
    let moved = all_in(&to).await;
    assert_eq!(moved.len(), 3, "no duplicates: pushes are idempotent by id");
    assert!(moved.contains(&entries[1]), "the parked entry stays parked");

    let (code, _, err) = dlq_args(&[
        "--file",
        to.to_str().unwrap(),
        "replay",
        "--remove",
        "--to-file",
        to.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("replay into the sink it reads from"), "{err}");
    let (code, _, err) = dlq_args(&[
        "--file",
        to.to_str().unwrap(),
        "replay",
        "nope",
        "--to-file",
        from.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no dead letter with id nope"), "{err}");
    let (code, out, err) = dlq_args(&[
        "--file",
        to.to_str().unwrap(),
        "purge",
        &entries[0].id,
        "nope",
    ]);
    assert_eq!(code, 2, "an unknown id is an input error for purge too");
    assert_eq!(out, "");
    assert!(err.contains("no dead letter with id nope"), "{err}");
    assert_eq!(all_in(&to).await.len(), 3, "nothing was removed");
    std::fs::remove_file(&from).unwrap();
    std::fs::remove_file(&to).unwrap();
}

#[tokio::test]
async fn a_closed_port_is_a_sink_failure() {
    for store in ["--postgres", "--redis"] {
        let url = if store == "--postgres" {
            "postgres://postgres@127.0.0.1:1/test"
        } else {
            "redis://127.0.0.1:1/"
        };
        let (code, out, err) = dlq_args(&[store, url, "list"]);
        assert_eq!(code, 1, "{store}: {err}");
        assert_eq!(out, "");
        assert!(err.contains("dead-letter sink unavailable"), "{err}");
    }
    let path = temp_file_named("closed");
    file_with(&path, &[letter(0, false)]).await;
    for to in ["--to-postgres", "--to-redis"] {
        let url = if to == "--to-postgres" {
            "postgres://postgres@127.0.0.1:1/test"
        } else {
            "redis://127.0.0.1:1/"
        };
        let (code, _, err) = dlq_args(&[
            "--file",
            path.to_str().unwrap(),
            "replay",
            "--remove",
            to,
            url,
        ]);
        assert_eq!(code, 1, "{to}: {err}");
    }
    assert_eq!(all_in(&path).await.len(), 1, "nothing removed");
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn it_lists_and_purges_redis_too() {
    let url = std::env::var("BUTTRESS_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let prefix = format!("buttress:dlq-cli-test:{}:", std::process::id());
    let Ok(sink) = RedisSink::connect(&url).await else {
        assert!(
            !required(),
            "Redis is required (BUTTRESS_REQUIRE_SERVICES=1) but unreachable at {url}"
        );
        eprintln!("skipped: Redis is not reachable at {url}; start redis-server or set BUTTRESS_REDIS_URL");
        return;
    };
    let sink = sink.with_prefix(prefix.clone());
    let entries = [letter(0, false), letter(1, true)];
    sink.push(&entries[0]).await.unwrap();

    // The second one arrives through `replay` from a file.
    let path = temp_file_named("to-redis");
    file_with(&path, &entries[1..]).await;
    let (ok, out, err) = dlq(
        &path,
        &[
            "replay",
            "--parked",
            "--remove",
            "--to-redis",
            &url,
            "--to-prefix",
            &prefix,
        ],
    );
    assert!(ok, "{err}");
    assert!(out.ends_with("moved 1 entry\n"), "{out}");
    assert!(all_in(&path).await.is_empty());

    let run = |args: &[&str]| {
        dlq_args(&[&["--redis", url.as_str(), "--prefix", &prefix][..], args].concat())
    };
    let (code, out, err) = run(&["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&entries[0].id) && out.contains(&entries[1].id),
        "{out}"
    );
    assert!(out.ends_with("2 entries\n"), "{out}");
    let (code, out, _) = run(&["unpark", "--all"]);
    assert_eq!(code, 0);
    assert!(out.ends_with("unparked 1 entry\n"), "{out}");
    let (code, out, _) = run(&["purge", "--all"]);
    assert_eq!(code, 0);
    assert_eq!(out, "purged 2 entries\n");
    assert!(sink.list(Selection::All).await.unwrap().is_empty());

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("DEL")
        .arg(format!("{prefix}stream"))
        .arg(format!("{prefix}entries"))
        .arg(format!("{prefix}index"))
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    std::fs::remove_file(&path).unwrap();
}
