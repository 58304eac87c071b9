//! A network namespace joined to the root namespace by a veth pair, for
//! real network faults (link down, bandwidth limits) between a client in
//! the test process and a server inside the namespace. Everything is
//! deleted on drop.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    pub name: String,
    /// The root-side end of the veth pair.
    pub host_if: String,
    /// The namespace-side end.
    pub ns_if: String,
    /// The address of the root side.
    pub host_addr: String,
    /// The address inside the namespace.
    pub ns_addr: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`ip` cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Create the namespace, the veth pair and the addresses; `Err` says
    /// why this machine cannot (not root, no `ip`, EPERM).
    pub fn new() -> Result<Self, String> {
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let subnet = (pid % 250) as u8;
        let name = format!("bt{pid}n{n}");
        let host_if = format!("bth{}n{n}", pid % 100_000);
        let ns_if = format!("btn{}n{n}", pid % 100_000);
        // A /30 per namespace: 4 * n within the pid's /24.
        let base = 4 * (n % 64);
        let host_addr = format!("10.213.{subnet}.{}", base + 1);
        let ns_addr = format!("10.213.{subnet}.{}", base + 2);
        ip(&["netns", "add", &name])?;
        let ns = Self {
            name,
            host_if,
            ns_if: ns_if.clone(),
            host_addr,
            ns_addr,
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_addr),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{}/30", ns.ns_addr),
            "dev",
            &ns_if,
        ])?;
        ip(&["-n", &ns.name, "link", "set", &ns_if, "up"])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Cut the link: the namespace-side veth goes down, so the root side
    /// loses carrier but keeps its route (taking the root side down would
    /// drop the route and send the traffic to the default gateway instead).
    pub fn partition(&self) {
        ip(&["-n", &self.name, "link", "set", &self.ns_if, "down"]).expect("link down");
    }

    /// Restore the link.
    pub fn heal(&self) {
        ip(&["-n", &self.name, "link", "set", &self.ns_if, "up"]).expect("link up");
    }

    /// Limit what the namespace sends to the root side (the provider's
    /// answers) to `rate` (a `tc` rate: `64kbit`, `1mbit`) with a token
    /// bucket (`tc qdisc … tbf`) on the namespace's end of the link. An
    /// 8 KiB burst passes at once; beyond it, bytes leave at `rate`, and
    /// what would queue for more than 100 ms is dropped (TCP resends it).
    /// `Err` says why it cannot (no `tc`, no `sch_tbf`).
    pub fn limit_bandwidth(&self, rate: &str) -> Result<(), String> {
        let out = self
            .command("tc")
            .args(["qdisc", "replace", "dev", &self.ns_if, "root", "tbf"])
            .args(["rate", rate, "burst", "8kb", "latency", "100ms"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("`tc` cannot run in the namespace: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`tc qdisc replace dev {} root tbf rate {rate}` failed: {}",
                self.ns_if,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Remove a bandwidth limit set by [`limit_bandwidth`](Self::limit_bandwidth).
    pub fn unlimit_bandwidth(&self) {
        let _ = self
            .command("tc")
            .args(["qdisc", "del", "dev", &self.ns_if, "root"])
            .stdin(Stdio::null())
            .output();
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the root-side end deletes its peer; then the namespace.
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
