//! Ports for processes a test starts on fixed ports (separate executables, etcd members,
//! chromedriver), which cannot be handed a listener bound on port 0.
//!
//! A port the kernel hands out for port 0 comes from the ephemeral range, the same range every
//! outgoing connection takes its local port from: between the test asking for it and the child
//! binding it, any connection made by a concurrent test may take it ("Address already in use").
//! The ports handed out here come from below that range, where no outgoing connection and no
//! port-0 listener ever lands, each checked free and never handed out twice by this process.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out (well above the registered services on a test machine).
const FLOOR: u32 = 20_000;

/// The next candidate's offset from the start of the range.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A port that is free on every interface now, outside the ephemeral range.
pub fn free_port() -> u16 {
    let ceiling = ephemeral_start().max(FLOOR + 1_000);
    let span = ceiling - FLOOR;
    // Test executables started one after the other begin at different places.
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(FLOOR + offset).expect("ports stay below 65536");
        let free = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
            && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free port between {FLOOR} and {ceiling}");
}
