//! A TCP proxy on 127.0.0.1 in front of an upstream on the loopback, with
//! network faults switched at run time: added latency, resets, half-open
//! connections (a blackhole) and answers cut after a number of bytes.
//!
//! The fault is chosen per connection, when it is accepted: first from the
//! queue filled by [`FaultProxy::set_next`], then the standing fault of
//! [`FaultProxy::set`]. A client that keeps connections alive would carry
//! an old fault on a pooled connection, so the tests use clients without an
//! idle pool (`pool_max_idle_per_host(0)`): one connection per request.
//!
//! Bounded: it listens on 127.0.0.1 only, serves only loopback peers,
//! forwards only to a loopback upstream, and dropping it aborts the
//! accept loop and every connection task.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// What the proxy does to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways untouched.
    Pass,
    /// Forward, but hold each chunk of the upstream's answer this long
    /// before passing it on (so the first byte of the answer comes late).
    /// The request goes through at once: the upstream acts, the answer is
    /// slow.
    Latency(Duration),
    /// Accept, then close at once with a TCP reset (`SO_LINGER` 0); the
    /// upstream is never contacted.
    Reset,
    /// Accept and read everything, never answer and never close: a
    /// half-open connection. The upstream is never contacted.
    Blackhole,
    /// Forward the request, pass on the first `n` bytes of the upstream's
    /// answer, then close the connection (FIN): an answer cut mid-body.
    CutAfter(usize),
}

/// One accepted connection, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The fault applied to it.
    pub fault: Fault,
    /// Bytes of the upstream's answer passed on to the client so far.
    down: Arc<AtomicU64>,
}

impl Connection {
    /// Bytes of the upstream's answer passed on to the client so far.
    pub fn bytes_to_client(&self) -> u64 {
        self.down.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct Plan {
    standing: Option<Fault>,
    next: VecDeque<Fault>,
}

struct Shared {
    upstream: SocketAddr,
    plan: Mutex<Plan>,
    accepted: AtomicU32,
    connections: Mutex<Vec<Connection>>,
}

impl Shared {
    fn next_fault(&self) -> Fault {
        let mut plan = self.plan.lock().unwrap();
        plan.next
            .pop_front()
            .or(plan.standing)
            .unwrap_or(Fault::Pass)
    }
}

/// The proxy; dropping it stops everything it started.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Start a proxy on 127.0.0.1 (a port the kernel picks) in front of
    /// `upstream`, passing everything until told otherwise.
    ///
    /// # Panics
    /// When `upstream` is not a loopback address.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        assert!(
            upstream.ip().is_loopback(),
            "the fault proxy only forwards to the loopback, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            plan: Mutex::default(),
            accepted: AtomicU32::new(0),
            connections: Mutex::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    /// The address clients connect to.
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The fault for every connection accepted from now on (after those
    /// queued by [`set_next`](Self::set_next)).
    pub fn set(&self, fault: Fault) {
        self.shared.plan.lock().unwrap().standing = Some(fault);
    }

    /// The next `n` connections get `fault`, then the standing fault
    /// applies again: a fault that clears itself in the middle of a call,
    /// after exactly `n` connections.
    pub fn set_next(&self, n: usize, fault: Fault) {
        let mut plan = self.shared.plan.lock().unwrap();
        plan.next.extend(std::iter::repeat_n(fault, n));
    }

    /// Back to [`Fault::Pass`], with nothing queued.
    pub fn clear(&self) {
        let mut plan = self.shared.plan.lock().unwrap();
        plan.standing = None;
        plan.next.clear();
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u32 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Every connection accepted so far, oldest first.
    pub fn connections(&self) -> Vec<Connection> {
        self.shared.connections.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks' `JoinSet`: aborting
        // it drops the set, which aborts them all.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        while tasks.try_join_next().is_some() {}
        if !peer.ip().is_loopback() {
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let fault = shared.next_fault();
        let down = Arc::new(AtomicU64::new(0));
        shared.connections.lock().unwrap().push(Connection {
            fault,
            down: Arc::clone(&down),
        });
        tasks.spawn(serve(client, shared.upstream, fault, down));
    }
}

async fn serve(client: TcpStream, upstream: SocketAddr, fault: Fault, down: Arc<AtomicU64>) {
    match fault {
        Fault::Reset => reset(&client),
        Fault::Blackhole => {
            let mut client = client;
            let mut sink = [0u8; 4096];
            // Read until the client gives up; never answer.
            while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
            // The client closed: hold our side open until aborted, as a
            // dead peer would (no FIN, no RST).
            std::future::pending::<()>().await;
        }
        Fault::Pass | Fault::Latency(_) | Fault::CutAfter(_) => {
            let connected =
                tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(upstream)).await;
            let Ok(Ok(upstream)) = connected else {
                return reset(&client);
            };
            forward(client, upstream, fault, &down).await;
        }
    }
}

/// Close with a reset: `SO_LINGER` 0, then drop.
fn reset(client: &TcpStream) {
    // Zero linger never blocks the thread: close sends RST at once.
    let _ = client.set_zero_linger();
}

async fn forward(client: TcpStream, upstream: TcpStream, fault: Fault, down: &AtomicU64) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
    };
    let answer = async {
        let mut left = match fault {
            Fault::CutAfter(n) => n,
            _ => usize::MAX,
        };
        let mut buf = vec![0u8; 16 * 1024];
        while left > 0 {
            let n = match upstream_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Fault::Latency(delay) = fault {
                tokio::time::sleep(delay).await;
            }
            let n = n.min(left);
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            left -= n;
            down.fetch_add(n as u64, Ordering::SeqCst);
        }
        let _ = client_write.shutdown().await;
    };
    let mut up = std::pin::pin!(up);
    let mut answer = std::pin::pin!(answer);
    tokio::select! {
        biased;
        // The answer is over (or cut): close the whole connection.
        () = &mut answer => {}
        // The client finished sending; the answer may still be coming.
        () = &mut up => answer.await,
    }
}
