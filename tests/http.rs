//! The HTTP integrations: `Classify` for status codes, `Retry-After`
//! parsing, `HttpError`, and `Classify` for `reqwest::Error` against a real
//! local server that misbehaves on purpose (refuses, hangs, resets, sends
//! garbage), plus the `Idempotency-Key` header as the server sees it.

#[path = "common/api_error.rs"]
mod api_error;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buttress::http::{parse_retry_after, retry_after, HttpError, MAX_RETRY_AFTER};
use buttress::reqwest::{error_for_status, with_current_idempotency_key, IdempotencyKeyExt};
use buttress::{resilient, Classify, ErrorClass};
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use api_error::ApiError;

use ErrorClass::{OutcomeUnknown, Permanent, RateLimited, Transient};

// ---------------------------------------------------------------------------
// Status codes

#[test]
fn every_status_has_its_class() {
    let table: &[(u16, ErrorClass)] = &[
        // Not errors: only error statuses are meant to be classified.
        (100, Permanent),
        (101, Permanent),
        (200, Permanent),
        (201, Permanent),
        (204, Permanent),
        (301, Permanent),
        (304, Permanent),
        (307, Permanent),
        // Client errors.
        (400, Permanent),
        (401, Permanent),
        (403, Permanent),
        (404, Permanent),
        (405, Permanent),
        (408, Transient),
        (409, Permanent),
        (410, Permanent),
        (413, Permanent),
        (418, Permanent),
        (422, Permanent),
        (425, Transient),
        (429, RateLimited),
        (451, Permanent),
        (499, Permanent),
        // Server errors.
        // The provider may have acted before failing: retried only when
        // the call is idempotent.
        (500, OutcomeUnknown),
        (501, Permanent),
        (502, OutcomeUnknown),
        (503, Transient),
        (504, OutcomeUnknown),
        (505, Permanent),
        (507, Permanent),
        (511, Permanent),
        (599, Permanent),
    ];
    for &(code, class) in table {
        let status = StatusCode::from_u16(code).unwrap();
        assert_eq!(status.class(), class, "class of {code}");
        assert_eq!(status.retry_after(), None, "retry_after of {code}");
        let error = HttpError::new(status, None, "");
        assert_eq!(error.class(), class, "class of HttpError {code}");
    }
}

#[test]
fn exactly_the_documented_statuses_are_retryable() {
    let retryable: Vec<u16> = (100..=999)
        .filter(|&code| {
            StatusCode::from_u16(code)
                .unwrap()
                .class()
                .is_retryable(false)
        })
        .collect();
    assert_eq!(retryable, [408, 425, 429, 503]);
}

#[test]
fn idempotent_calls_also_retry_the_statuses_of_an_unknown_outcome() {
    let retryable: Vec<u16> = (100..=999)
        .filter(|&code| {
            StatusCode::from_u16(code)
                .unwrap()
                .class()
                .is_retryable(true)
        })
        .collect();
    assert_eq!(retryable, [408, 425, 429, 500, 502, 503, 504]);
}

// ---------------------------------------------------------------------------
// Retry-After

/// Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date.
const RFC_DATE_SECS: u64 = 784_111_777;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    parse_retry_after(&HeaderValue::from_str(value).unwrap(), now)
}

fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

/// Formats `t` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn imf_fixdate(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let days = secs / 86_400;
    let (hour, min, sec) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Days since the epoch to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {month} {year} {hour:02}:{min:02}:{sec:02} GMT")
}

#[test]
fn the_test_date_formatter_is_right() {
    assert_eq!(
        imf_fixdate(at(RFC_DATE_SECS)),
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
    assert_eq!(imf_fixdate(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(
        imf_fixdate(at(951_782_400)),
        "Tue, 29 Feb 2000 00:00:00 GMT"
    );
}

#[test]
fn delta_seconds() {
    let now = SystemTime::now();
    assert_eq!(parse("120", now), secs(120));
    assert_eq!(parse("1", now), secs(1));
    assert_eq!(parse("0", now), Some(Duration::ZERO));
    assert_eq!(parse("007", now), secs(7));
    // Surrounding whitespace is ignored (spaces and tabs are valid in a
    // header value).
    assert_eq!(parse(" 120 ", now), secs(120));
    assert_eq!(parse("\t5\t", now), secs(5));
    // The clock does not matter for delta-seconds.
    assert_eq!(parse("120", UNIX_EPOCH), secs(120));
}

#[test]
fn delta_seconds_are_capped() {
    let now = SystemTime::now();
    assert_eq!(MAX_RETRY_AFTER, Duration::from_secs(3600));
    assert_eq!(parse("3600", now), Some(MAX_RETRY_AFTER));
    assert_eq!(parse("3599", now), secs(3599));
    assert_eq!(parse("3601", now), Some(MAX_RETRY_AFTER));
    assert_eq!(parse("86400", now), Some(MAX_RETRY_AFTER));
    assert_eq!(parse(&u64::MAX.to_string(), now), Some(MAX_RETRY_AFTER));
    // Too large for a u64: still a (huge) number of seconds, so capped.
    assert_eq!(parse("18446744073709551616", now), Some(MAX_RETRY_AFTER));
    assert_eq!(parse(&"9".repeat(4000), now), Some(MAX_RETRY_AFTER));
    // Leading zeros do not make a small number huge.
    assert_eq!(parse(&format!("{}7", "0".repeat(100)), now), secs(7));
}

#[test]
fn http_dates_in_all_three_formats() {
    let formats = [
        "Sun, 06 Nov 1994 08:49:37 GMT",  // IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT", // obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",       // asctime
    ];
    for date in formats {
        // In the future.
        assert_eq!(parse(date, at(RFC_DATE_SECS - 90)), secs(90), "{date}");
        // Sub-second clocks: the wait is measured from the exact `now`.
        let now = at(RFC_DATE_SECS - 2) + Duration::from_millis(250);
        assert_eq!(
            parse(date, now),
            Some(Duration::from_millis(1750)),
            "{date}"
        );
        // Exactly now, or in the past: ready at once.
        assert_eq!(
            parse(date, at(RFC_DATE_SECS)),
            Some(Duration::ZERO),
            "{date}"
        );
        assert_eq!(
            parse(date, at(RFC_DATE_SECS + 1)),
            Some(Duration::ZERO),
            "{date}"
        );
        assert_eq!(
            parse(date, SystemTime::now()),
            Some(Duration::ZERO),
            "{date}"
        );
        // Far in the future: capped.
        assert_eq!(parse(date, at(0)), Some(MAX_RETRY_AFTER), "{date}");
        // Whitespace around the date is ignored.
        assert_eq!(
            parse(&format!("  {date} "), at(RFC_DATE_SECS - 3)),
            secs(3),
            "{date}"
        );
    }
}

#[test]
fn http_date_relative_to_the_real_clock() {
    let now = SystemTime::now();
    let date = imf_fixdate(now + Duration::from_secs(60));
    let wait = parse(&date, now).unwrap();
    assert!(
        wait > Duration::from_secs(59) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    let far = imf_fixdate(now + Duration::from_secs(3 * 86_400));
    assert_eq!(parse(&far, now), Some(MAX_RETRY_AFTER));
}

#[test]
fn garbage_is_none() {
    let now = SystemTime::now();
    for value in [
        "",
        "   ",
        "-1",
        "+5",
        "1.5",
        "1e3",
        "0x10",
        "120s",
        "1 2",
        "soon",
        "tomorrow",
        "Sun, 06 Nov 1994 08:49:37",         // no zone
        "Sun, 06 Nov 1994 08:49:37 UTC",     // wrong zone
        "Mon, 06 Nov 1994 08:49:37 GMT",     // wrong weekday
        "Sun, 31 Feb 1994 08:49:37 GMT",     // no such day
        "Sun, 06 Nov 1994 25:49:37 GMT",     // no such hour
        "Thu, 01 Jan 1900 00:00:00 GMT",     // before 1970
        "Sun, 06 Nov 1994 08:49:37 GMT, 12", // a list
        "2024-01-01T00:00:00Z",              // ISO 8601 is not an HTTP-date
    ] {
        assert_eq!(parse(value, now), None, "{value:?}");
    }
}

#[test]
fn non_utf8_and_odd_bytes_are_none_without_panicking() {
    let now = SystemTime::now();
    for bytes in [
        &b"\xff"[..],
        b"\xff\xfe\xfd",
        b"12\xff",
        b"\xe2\x82",
        b"Sun, 06 Nov 1994 08:49:37 GMT\xff",
        b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80",
        "Sün, 06 Nov 1994 08:49:37 GMT".as_bytes(),
        "１２".as_bytes(), // full-width digits are not ASCII digits
    ] {
        let value = HeaderValue::from_bytes(bytes).unwrap();
        assert_eq!(parse_retry_after(&value, now), None, "{bytes:?}");
    }
    // Every single byte a header value may hold, and a sweep of lengths
    // around the three date formats' fixed sizes.
    for byte in (0x20..=0xff_u8).chain([b'\t']).filter(|&b| b != 0x7f) {
        for len in [1, 23, 24, 29, 30, 31] {
            let value = HeaderValue::from_bytes(&vec![byte; len]).unwrap();
            let parsed = parse_retry_after(&value, now);
            if byte.is_ascii_digit() {
                assert!(parsed.is_some());
            } else {
                assert_eq!(parsed, None, "{byte:#x} x {len}");
            }
        }
    }
}

#[test]
fn retry_after_reads_the_first_parseable_header() {
    let mut headers = HeaderMap::new();
    assert_eq!(retry_after(&headers), None);

    headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
    assert_eq!(retry_after(&headers), secs(7));

    headers.insert(RETRY_AFTER, HeaderValue::from_static("never"));
    assert_eq!(retry_after(&headers), None);
    headers.append(RETRY_AFTER, HeaderValue::from_static("11"));
    headers.append(RETRY_AFTER, HeaderValue::from_static("13"));
    assert_eq!(retry_after(&headers), secs(11));

    // An HTTP-date is measured from the real clock.
    let mut headers = HeaderMap::new();
    let date = imf_fixdate(SystemTime::now() + Duration::from_secs(30));
    headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
    let wait = retry_after(&headers).unwrap();
    assert!(
        wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    // Past dates mean "now".
    headers.insert(
        RETRY_AFTER,
        HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
    );
    assert_eq!(retry_after(&headers), Some(Duration::ZERO));
}

// ---------------------------------------------------------------------------
// HttpError

#[test]
fn http_error_accessors_and_classify() {
    let error = HttpError::new(
        StatusCode::TOO_MANY_REQUESTS,
        secs(7),
        String::from("slow down"),
    );
    assert_eq!(error.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error.retry_after(), secs(7));
    assert_eq!(Classify::retry_after(&error), secs(7));
    assert_eq!(error.class(), RateLimited);
    assert_eq!(error.body(), "slow down");

    // A 503 may carry a Retry-After too; the class stays Transient.
    let error = HttpError::new(StatusCode::SERVICE_UNAVAILABLE, secs(2), "");
    assert_eq!(error.class(), Transient);
    assert_eq!(Classify::retry_after(&error), secs(2));

    let clone = error.clone();
    assert_eq!(clone.status(), error.status());
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(clone);
    assert_eq!(boxed.to_string(), "HTTP 503 Service Unavailable");
    assert!(format!("{error:?}").contains("HttpError"));
}

#[test]
fn http_error_body_is_truncated_at_a_char_boundary() {
    let ascii = HttpError::new(StatusCode::BAD_REQUEST, None, "x".repeat(5000));
    assert_eq!(ascii.body().len(), 1024);

    // 3-byte characters: 1024 is not a boundary, 1023 is.
    let euros = HttpError::new(StatusCode::BAD_REQUEST, None, "€".repeat(500));
    assert_eq!(euros.body().len(), 1023);
    assert!(euros.body().chars().all(|c| c == '€'));

    // 4-byte characters after one ASCII byte: the cut lands at 1021.
    let emoji = format!("a{}", "🦀".repeat(400));
    let emoji = HttpError::new(StatusCode::BAD_REQUEST, None, emoji);
    assert_eq!(emoji.body().len(), 1021);

    let exact = HttpError::new(StatusCode::BAD_REQUEST, None, "y".repeat(1024));
    assert_eq!(exact.body().len(), 1024);
}

#[test]
fn http_error_display() {
    let show = |code: u16, body: &str| {
        HttpError::new(StatusCode::from_u16(code).unwrap(), None, body).to_string()
    };
    assert_eq!(show(503, ""), "HTTP 503 Service Unavailable");
    assert_eq!(
        show(503, "upstream overloaded"),
        "HTTP 503 Service Unavailable: upstream overloaded"
    );
    assert_eq!(
        show(400, "first line\nsecond line"),
        "HTTP 400 Bad Request: first line"
    );
    assert_eq!(
        show(400, "\r\n  \n  {\"error\":\"bad\"}  \r\nmore"),
        "HTTP 400 Bad Request: {\"error\":\"bad\"}"
    );
    assert_eq!(show(400, " \n\t\n"), "HTTP 400 Bad Request");
    // No canonical reason: the number alone.
    assert_eq!(show(599, "odd"), "HTTP 599: odd");
    // At most 200 characters of the line, counted in characters.
    let long = show(500, &"é".repeat(300));
    assert_eq!(
        long,
        format!("HTTP 500 Internal Server Error: {}", "é".repeat(200))
    );
    // Control characters cannot forge log lines or colour terminals.
    assert_eq!(
        show(502, "bad\u{1b}[31mred\u{7}"),
        "HTTP 502 Bad Gateway: bad [31mred "
    );
}

// ---------------------------------------------------------------------------
// A local server that misbehaves on purpose

/// What the server does with a connection once it has read the request head.
#[derive(Clone)]
enum Reply {
    /// Write these bytes, then close the connection.
    Send(Vec<u8>),
    /// Never answer; hold the connection until the client hangs up.
    Hang,
}

fn response(head: &str, body: &str) -> Reply {
    Reply::Send(
        format!(
            "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

struct Server {
    url: String,
    /// The raw head of every request received, in order.
    requests: mpsc::UnboundedReceiver<String>,
}

impl Server {
    /// Serves `replies` in order, one per connection; the last repeats.
    async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/things", listener.local_addr().unwrap());
        let (requests_tx, requests) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut next = 0;
            while let Ok((socket, _)) = listener.accept().await {
                let reply = replies[next.min(replies.len() - 1)].clone();
                next += 1;
                tokio::spawn(handle(socket, reply, requests_tx.clone()));
            }
        });
        Self { url, requests }
    }

    /// The next request head the server received.
    async fn request(&mut self) -> String {
        self.requests.recv().await.expect("the server is running")
    }
}

async fn handle(mut socket: TcpStream, reply: Reply, requests: mpsc::UnboundedSender<String>) {
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = requests.send(String::from_utf8_lossy(&head).into_owned());
    match reply {
        Reply::Send(bytes) => {
            let _ = socket.write_all(&bytes).await;
            let _ = socket.flush().await;
        }
        Reply::Hang => while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {},
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        // A safety net: a broken test fails instead of hanging.
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

// ---------------------------------------------------------------------------
// reqwest::Error

#[tokio::test]
async fn connection_refused_is_transient() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);

    let error = client()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    assert_eq!(error.class(), Transient, "{error:?}");
    assert_eq!(error.retry_after(), None);
}

#[tokio::test]
async fn timeout_after_sending_is_outcome_unknown() {
    let mut server = Server::start(vec![Reply::Hang]).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();

    let error = client.post(&server.url).send().await.unwrap_err();
    // The server did get the request: only the answer is missing.
    assert!(server.request().await.starts_with("POST /v1/things "));
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(error.class(), OutcomeUnknown, "{error:?}");
}

#[tokio::test]
async fn reset_mid_response_head_is_outcome_unknown() {
    let partial = b"HTTP/1.1 200 OK\r\nContent-Type: appli".to_vec();
    let mut server = Server::start(vec![Reply::Send(partial)]).await;

    let error = client().post(&server.url).send().await.unwrap_err();
    server.request().await;
    assert!(error.is_request(), "{error:?}");
    assert_eq!(error.class(), OutcomeUnknown, "{error:?}");
}

#[tokio::test]
async fn connection_closed_without_an_answer_is_outcome_unknown() {
    let mut server = Server::start(vec![Reply::Send(Vec::new())]).await;

    let error = client().post(&server.url).send().await.unwrap_err();
    server.request().await;
    assert_eq!(error.class(), OutcomeUnknown, "{error:?}");
}

#[tokio::test]
async fn reset_mid_body_is_outcome_unknown_not_a_decode_failure() {
    let partial =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":"
            .to_vec();
    let server = Server::start(vec![Reply::Send(partial)]).await;
    let client = client();

    // Through `.json()`: reqwest reports a decode error caused by the body.
    let response = client.post(&server.url).send().await.unwrap();
    let error = response.json::<serde_json::Value>().await.unwrap_err();
    assert!(error.is_decode(), "{error:?}");
    assert_eq!(error.class(), OutcomeUnknown, "{error:?}");

    // Through `.text()` and `.bytes()`: the same.
    let response = client.post(&server.url).send().await.unwrap();
    let error = response.text().await.unwrap_err();
    assert_eq!(error.class(), OutcomeUnknown, "{error:?}");
    let response = client.post(&server.url).send().await.unwrap();
    let error = response.bytes().await.unwrap_err();
    assert_eq!(error.class(), OutcomeUnknown, "{error:?}");
}

#[tokio::test]
async fn invalid_json_is_permanent() {
    let server = Server::start(vec![response(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json",
        "{not json",
    )])
    .await;

    let response = client().get(&server.url).send().await.unwrap();
    let error = response.json::<serde_json::Value>().await.unwrap_err();
    assert!(error.is_decode(), "{error:?}");
    assert_eq!(error.class(), Permanent, "{error:?}");
}

#[tokio::test]
async fn builder_errors_are_permanent() {
    let error = client().get("not a url").send().await.unwrap_err();
    assert!(error.is_builder(), "{error:?}");
    assert_eq!(error.class(), Permanent);

    // A key that is not a valid header value fails at send, not with a panic.
    let error = client()
        .get("http://127.0.0.1:1/")
        .idempotency_key("bad\nkey")
        .send()
        .await
        .unwrap_err();
    assert!(error.is_builder(), "{error:?}");
    assert_eq!(error.class(), Permanent);
}

#[tokio::test]
async fn reqwests_own_status_errors_use_the_status_class() {
    let server = Server::start(vec![
        response("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 9", ""),
        response("HTTP/1.1 429 Too Many Requests", ""),
        response("HTTP/1.1 404 Not Found", ""),
    ])
    .await;
    let client = client();
    let mut classes = Vec::new();
    for _ in 0..3 {
        let response = client.get(&server.url).send().await.unwrap();
        let error = response.error_for_status().unwrap_err();
        assert!(error.is_status());
        // reqwest's error keeps no headers: no Retry-After.
        assert_eq!(error.retry_after(), None);
        classes.push(error.class());
    }
    assert_eq!(classes, [Transient, RateLimited, Permanent]);
}

// ---------------------------------------------------------------------------
// error_for_status

#[tokio::test]
async fn error_for_status_429_keeps_retry_after_and_body() {
    let server = Server::start(vec![response(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7",
        "{\"error\":\"rate_limited\"}",
    )])
    .await;

    let response = client().get(&server.url).send().await.unwrap();
    let error = error_for_status(response).await.unwrap_err();
    assert_eq!(error.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error.retry_after(), secs(7));
    assert_eq!(error.class(), RateLimited);
    assert_eq!(Classify::retry_after(&error), secs(7));
    assert_eq!(error.body(), "{\"error\":\"rate_limited\"}");
    assert_eq!(
        error.to_string(),
        "HTTP 429 Too Many Requests: {\"error\":\"rate_limited\"}"
    );
}

#[tokio::test]
async fn error_for_status_503_with_an_http_date() {
    let date = imf_fixdate(SystemTime::now() + Duration::from_secs(30));
    let server = Server::start(vec![response(
        &format!("HTTP/1.1 503 Service Unavailable\r\nRetry-After: {date}"),
        "maintenance",
    )])
    .await;

    let response = client().get(&server.url).send().await.unwrap();
    let error = error_for_status(response).await.unwrap_err();
    assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error.class(), Transient);
    let wait = error.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    assert_eq!(error.body(), "maintenance");
}

#[tokio::test]
async fn error_for_status_404_is_permanent() {
    let server = Server::start(vec![response("HTTP/1.1 404 Not Found", "no such thing")]).await;

    let response = client().get(&server.url).send().await.unwrap();
    let error = error_for_status(response).await.unwrap_err();
    assert_eq!(error.status(), StatusCode::NOT_FOUND);
    assert_eq!(error.class(), Permanent);
    assert_eq!(error.retry_after(), None);
    assert_eq!(error.body(), "no such thing");
}

#[tokio::test]
async fn error_for_status_passes_success_through() {
    let server = Server::start(vec![
        response("HTTP/1.1 200 OK", "hello"),
        response("HTTP/1.1 204 No Content", ""),
        response("HTTP/1.1 304 Not Modified", ""),
    ])
    .await;
    let client = client();

    let response = client.get(&server.url).send().await.unwrap();
    let response = error_for_status(response).await.unwrap();
    assert_eq!(response.text().await.unwrap(), "hello");

    let response = client.get(&server.url).send().await.unwrap();
    assert_eq!(
        error_for_status(response).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );

    // Only 2xx passes: a 3xx the client did not follow is an error.
    let response = client.get(&server.url).send().await.unwrap();
    let error = error_for_status(response).await.unwrap_err();
    assert_eq!(error.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(error.class(), Permanent);
}

#[tokio::test]
async fn error_for_status_reads_at_most_a_kibibyte() {
    let big = "e".repeat(1 << 20);
    let server = Server::start(vec![response("HTTP/1.1 500 Internal Server Error", &big)]).await;

    let response = client().get(&server.url).send().await.unwrap();
    let error = error_for_status(response).await.unwrap_err();
    assert_eq!(error.class(), OutcomeUnknown);
    assert_eq!(error.body().len(), 1024);
}

#[tokio::test]
async fn error_for_status_with_a_broken_body_has_an_empty_body() {
    let partial =
        b"HTTP/1.1 502 Bad Gateway\r\nRetry-After: 3\r\nContent-Length: 500\r\n\r\nupstream"
            .to_vec();
    let server = Server::start(vec![Reply::Send(partial)]).await;

    let response = client().get(&server.url).send().await.unwrap();
    let error = error_for_status(response).await.unwrap_err();
    assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(error.retry_after(), secs(3));
    assert_eq!(error.body(), "");
    assert_eq!(error.to_string(), "HTTP 502 Bad Gateway");
}

// ---------------------------------------------------------------------------
// Idempotency-Key

#[tokio::test]
async fn idempotency_key_header_reaches_the_server() {
    let mut server = Server::start(vec![response("HTTP/1.1 200 OK", "")]).await;

    client()
        .post(&server.url)
        .idempotency_key("order-42")
        .send()
        .await
        .unwrap();
    let request = server.request().await;
    assert_eq!(header(&request, "Idempotency-Key"), Some("order-42"));

    // Outside a wrapped body there is no current key: no header.
    with_current_idempotency_key(client().post(&server.url))
        .send()
        .await
        .unwrap();
    let request = server.request().await;
    assert_eq!(header(&request, "Idempotency-Key"), None);
}

#[resilient(
    provider = "http-test-keyed",
    timeout = "5s",
    retry(max_attempts = 3, backoff = constant("0s")),
    idempotent(key = "k-1")
)]
async fn create_keyed(client: &reqwest::Client, url: &str) -> Result<String, ApiError> {
    let request = with_current_idempotency_key(client.post(url));
    let response = error_for_status(request.send().await?).await?;
    Ok(response.text().await?)
}

#[resilient(
    provider = "http-test-generated",
    timeout = "5s",
    retry(max_attempts = 3, backoff = constant("0s")),
    idempotent
)]
async fn create_generated(client: &reqwest::Client, url: &str) -> Result<String, ApiError> {
    let request = with_current_idempotency_key(client.post(url));
    let response = error_for_status(request.send().await?).await?;
    Ok(response.text().await?)
}

#[resilient(provider = "http-test-unkeyed", timeout = "5s", retry = off)]
async fn create_unkeyed(client: &reqwest::Client, url: &str) -> Result<String, ApiError> {
    let request = with_current_idempotency_key(client.post(url));
    let response = error_for_status(request.send().await?).await?;
    Ok(response.text().await?)
}

#[resilient(
    provider = "http-test-not-idempotent",
    timeout = "5s",
    retry(max_attempts = 3, backoff = constant("0s"))
)]
async fn create_not_idempotent(client: &reqwest::Client, url: &str) -> Result<String, ApiError> {
    let response = error_for_status(client.post(url).send().await?).await?;
    Ok(response.text().await?)
}

/// Every request head the server has received so far, without waiting.
fn received(server: &mut Server) -> Vec<String> {
    std::iter::from_fn(|| server.requests.try_recv().ok()).collect()
}

const UNKNOWN_OUTCOMES: [&str; 3] = [
    "HTTP/1.1 500 Internal Server Error",
    "HTTP/1.1 502 Bad Gateway",
    "HTTP/1.1 504 Gateway Timeout",
];

#[tokio::test]
async fn a_call_that_is_not_idempotent_is_not_retried_after_500_502_or_504() {
    for head in UNKNOWN_OUTCOMES {
        let mut server = Server::start(vec![
            response(head, "maybe"),
            response("HTTP/1.1 200 OK", "ok"),
        ])
        .await;

        let error = create_not_idempotent(&client(), &server.url)
            .await
            .unwrap_err();
        let ApiError::Status(error) = error else {
            panic!("{head}: expected the provider's status, got {error:?}");
        };
        assert_eq!(error.class(), OutcomeUnknown, "{head}");
        assert_eq!(
            received(&mut server).len(),
            1,
            "{head}: sent once, not retried"
        );
    }
}

#[tokio::test]
async fn an_idempotent_call_is_retried_after_500_502_or_504_with_the_same_key() {
    for head in UNKNOWN_OUTCOMES {
        let mut server = Server::start(vec![
            response(head, "maybe"),
            response("HTTP/1.1 200 OK", "ok"),
        ])
        .await;

        let answer = create_keyed(&client(), &server.url).await;
        assert_eq!(answer.unwrap(), "ok", "{head}");
        let requests = received(&mut server);
        assert_eq!(requests.len(), 2, "{head}: retried once");
        for request in &requests {
            assert_eq!(header(request, "Idempotency-Key"), Some("k-1"), "{head}");
        }
    }
}

#[tokio::test]
async fn the_calls_key_is_sent_on_every_attempt() {
    let mut server = Server::start(vec![
        response("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0", "busy"),
        response("HTTP/1.1 200 OK", "created"),
    ])
    .await;

    let created = create_keyed(&client(), &server.url).await.unwrap();
    assert_eq!(created, "created");
    for _ in 0..2 {
        let request = server.request().await;
        assert_eq!(header(&request, "Idempotency-Key"), Some("k-1"));
    }
}

#[tokio::test]
async fn a_generated_key_is_the_same_on_every_attempt() {
    let mut server = Server::start(vec![
        // A reset after sending: retried only because the call is idempotent.
        Reply::Send(b"HTTP/1.1 200 OK\r\nConte".to_vec()),
        response("HTTP/1.1 200 OK", "created"),
    ])
    .await;

    let created = create_generated(&client(), &server.url).await.unwrap();
    assert_eq!(created, "created");
    let first = server.request().await;
    let second = server.request().await;
    let key = header(&first, "Idempotency-Key").expect("a generated key");
    assert!(!key.is_empty());
    assert_eq!(header(&second, "Idempotency-Key"), Some(key));
}

#[tokio::test]
async fn a_call_without_a_key_sends_no_header() {
    let mut server = Server::start(vec![response("HTTP/1.1 200 OK", "ok")]).await;

    assert_eq!(create_unkeyed(&client(), &server.url).await.unwrap(), "ok");
    let request = server.request().await;
    assert_eq!(header(&request, "Idempotency-Key"), None);
}
