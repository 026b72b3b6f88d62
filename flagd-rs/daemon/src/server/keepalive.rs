//! Keepalive enforcement for the gRPC-only sync port, as grpc-go's server applies it
//! (flagd's `--keep-alive-min-time` and `--keep-alive-permit-without-stream`).
//!
//! hyper answers every HTTP/2 PING and has no ping policy, so [`PingGuard`] watches the frames
//! of the connection instead: it reads the 9-byte frame headers of both directions as they pass
//! (never the payloads, which it skips by length) and applies grpc-go's rule to each PING the
//! client sends without the ACK flag:
//!
//! - a ping sooner than the minimum interval after the previous one is a strike (with no open
//!   stream and pings not permitted without one, the interval is two hours);
//! - a DATA or HEADERS frame sent by the server since the previous ping forgives all strikes;
//! - the third strike (grpc-go tolerates two) ends the connection: the guard writes a GOAWAY
//!   with `ENHANCE_YOUR_CALM` and debug data `too_many_pings` between two of hyper's frames,
//!   closes its writing side and, once the client has gone (or after a short drain), reports the
//!   end of the connection to hyper.
//!
//! The guard only ever inserts a frame at a frame boundary of the server's output, so the
//! client always sees a well-formed stream of frames.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::listen::H2_PREFACE;

/// grpc-go's default minimum interval between client pings.
pub const DEFAULT_MIN_TIME: Duration = Duration::from_secs(30);

/// Strikes a client may collect before the connection is closed (grpc-go's `maxPingStrikes`).
const MAX_PING_STRIKES: u8 = 2;

/// The interval that applies when pings without an open stream are not permitted (grpc-go's
/// `defaultPingTimeout`).
const IDLE_PING_INTERVAL: Duration = Duration::from_secs(2 * 60 * 60);

/// How long the guard waits for the client to close after the GOAWAY before it ends the
/// connection itself.
const DRAIN: Duration = Duration::from_secs(1);

/// HTTP/2 frame types the guard looks at.
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PING: u8 = 0x6;
/// The END_STREAM flag of DATA and HEADERS, and the ACK flag of PING (both bit 0).
const END_STREAM_OR_ACK: u8 = 0x1;
/// `ENHANCE_YOUR_CALM` (RFC 9113 §7).
const ENHANCE_YOUR_CALM: u32 = 0xb;
const TOO_MANY_PINGS: &[u8] = b"too_many_pings";

/// What the sync port enforces on client pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingPolicy {
    /// The shortest interval between client pings that is not a strike.
    pub min_time: Duration,
    /// Whether pings are allowed while the client has no open stream.
    pub permit_without_stream: bool,
}

impl Default for PingPolicy {
    fn default() -> Self {
        Self {
            min_time: DEFAULT_MIN_TIME,
            permit_without_stream: true,
        }
    }
}

/// One frame header seen on the connection.
#[derive(Debug, Clone, Copy)]
struct FrameHead {
    kind: u8,
    flags: u8,
    stream: u32,
}

/// Finds the frame headers in a stream of HTTP/2 bytes fed in pieces of any size.
#[derive(Debug)]
struct FrameScanner {
    /// Bytes of the client preface still to skip (24 inbound, 0 outbound).
    preface: usize,
    head: [u8; 9],
    head_len: usize,
    /// Payload bytes of the current frame still to skip.
    payload: usize,
    /// Whether a whole frame has passed (the server's SETTINGS must come first).
    started: bool,
}

impl FrameScanner {
    fn new(preface: usize) -> Self {
        Self {
            preface,
            head: [0; 9],
            head_len: 0,
            payload: 0,
            started: false,
        }
    }

    /// Whether the bytes fed so far end exactly between two frames.
    fn at_boundary(&self) -> bool {
        self.started && self.preface == 0 && self.head_len == 0 && self.payload == 0
    }

    fn feed(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(FrameHead)) {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.payload > 0 {
                let n = self.payload.min(bytes.len());
                self.payload -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.head_len).min(bytes.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
            self.head_len += n;
            bytes = &bytes[n..];
            if self.head_len == 9 {
                let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = self.head;
                self.head_len = 0;
                self.payload = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                self.started = true;
                on_frame(FrameHead {
                    kind,
                    flags,
                    stream: u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]),
                });
            }
        }
    }
}

/// Where the guard is in the life of the connection.
#[derive(Debug)]
enum State {
    /// Passing bytes through and watching.
    Serving,
    /// The client broke the policy: the GOAWAY goes out at the next frame boundary (`sent`
    /// bytes of it are already written).
    GoAway { sent: usize },
    /// The GOAWAY is out and the writing side closed: hyper's further output is dropped and
    /// the client's input discarded until it closes or the drain time is over.
    Draining(Pin<Box<tokio::time::Sleep>>),
    /// Reported as closed to hyper.
    Closed,
}

/// An HTTP/2 server connection with grpc-go's ping policy enforced on it.
#[derive(Debug)]
pub struct PingGuard<S> {
    inner: S,
    policy: PingPolicy,
    inbound: FrameScanner,
    outbound: FrameScanner,
    last_ping: Option<Instant>,
    strikes: u8,
    /// The server sent DATA or HEADERS since the last client ping.
    forgive: bool,
    /// Client streams the server has not finished yet.
    open_streams: SmallVec<[u32; 8]>,
    /// The highest stream the client opened (the GOAWAY's last-stream-id).
    last_stream: u32,
    goaway: [u8; 9 + 8 + TOO_MANY_PINGS.len()],
    state: State,
}

impl<S> PingGuard<S> {
    /// Wraps a fresh server connection (nothing read or written yet).
    pub fn new(inner: S, policy: PingPolicy) -> Self {
        Self {
            inner,
            policy,
            inbound: FrameScanner::new(H2_PREFACE.len()),
            outbound: FrameScanner::new(0),
            last_ping: None,
            strikes: 0,
            forgive: false,
            open_streams: SmallVec::new(),
            last_stream: 0,
            goaway: [0; 9 + 8 + TOO_MANY_PINGS.len()],
            state: State::Serving,
        }
    }

    /// Applies the policy to one client frame.
    fn on_client_frame(&mut self, frame: FrameHead) {
        match frame.kind {
            HEADERS if frame.stream % 2 == 1 && !self.open_streams.contains(&frame.stream) => {
                self.open_streams.push(frame.stream);
                self.last_stream = self.last_stream.max(frame.stream);
            }
            RST_STREAM => self.open_streams.retain(|s| *s != frame.stream),
            PING if frame.flags & END_STREAM_OR_ACK == 0 => self.on_ping(Instant::now()),
            _ => {}
        }
    }

    fn on_ping(&mut self, now: Instant) {
        let last = self.last_ping.replace(now);
        if std::mem::take(&mut self.forgive) {
            self.strikes = 0;
            return;
        }
        let interval = if self.open_streams.is_empty() && !self.policy.permit_without_stream {
            IDLE_PING_INTERVAL
        } else {
            self.policy.min_time
        };
        if last.is_some_and(|last| now.duration_since(last) < interval) {
            self.strikes = self.strikes.saturating_add(1);
        }
        if self.strikes > MAX_PING_STRIKES && matches!(self.state, State::Serving) {
            tracing::debug!("a client pinged too often; closing the connection with GOAWAY");
            self.goaway = goaway_frame(self.last_stream);
            self.state = State::GoAway { sent: 0 };
        }
    }

    /// Notes one server frame.
    fn on_server_frame(&mut self, frame: FrameHead) {
        match frame.kind {
            DATA | HEADERS => {
                self.forgive = true;
                if frame.flags & END_STREAM_OR_ACK != 0 {
                    self.open_streams.retain(|s| *s != frame.stream);
                }
            }
            RST_STREAM => self.open_streams.retain(|s| *s != frame.stream),
            _ => {}
        }
    }
}

/// A GOAWAY frame with `ENHANCE_YOUR_CALM` and `too_many_pings`.
fn goaway_frame(last_stream: u32) -> [u8; 9 + 8 + TOO_MANY_PINGS.len()] {
    let mut frame = [0u8; 9 + 8 + TOO_MANY_PINGS.len()];
    let len = 8 + TOO_MANY_PINGS.len();
    frame[..3].copy_from_slice(&u32::try_from(len).unwrap_or(0).to_be_bytes()[1..]);
    frame[3] = 0x7; // GOAWAY, no flags, stream 0.
    frame[9..13].copy_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    frame[13..17].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    frame[17..].copy_from_slice(TOO_MANY_PINGS);
    frame
}

impl<S: AsyncRead + AsyncWrite + Unpin> PingGuard<S> {
    /// Moves a pending GOAWAY forward once the server's output is between two frames:
    /// writes it, flushes, closes the writing side and starts the drain. `Ready` once there
    /// is nothing (more) to do now.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let State::GoAway { sent } = &mut self.state else {
            return Poll::Ready(Ok(()));
        };
        if !self.outbound.at_boundary() {
            // hyper is in the middle of a frame; the GOAWAY follows it.
            return Poll::Ready(Ok(()));
        }
        while *sent < self.goaway.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.goaway[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        // A failed shutdown only means the client is gone already.
        let _ = ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
        self.state = State::Draining(Box::pin(tokio::time::sleep(DRAIN)));
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PingGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Closed => return Poll::Ready(Ok(())),
                State::Draining(deadline) => {
                    if deadline.as_mut().poll(cx).is_ready() {
                        this.state = State::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 512];
                    let mut discard = ReadBuf::new(&mut scratch);
                    match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut discard)) {
                        Ok(()) if !discard.filled().is_empty() => continue,
                        // The client closed (or broke off): the connection is over.
                        _ => this.state = State::Closed,
                    }
                }
                State::GoAway { .. } => {
                    ready!(this.poll_goaway(cx))?;
                    if matches!(this.state, State::GoAway { .. }) {
                        // Not at a boundary yet: keep feeding hyper until it finishes its frame.
                        break;
                    }
                }
                State::Serving => break,
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let mut frames: SmallVec<[FrameHead; 4]> = SmallVec::new();
        this.inbound
            .feed(&buf.filled()[before..], |frame| frames.push(frame));
        for frame in frames {
            this.on_client_frame(frame);
        }
        if matches!(this.state, State::GoAway { .. }) {
            // Write the GOAWAY now if hyper's output allows it; otherwise it goes out with
            // hyper's next write (its ping acknowledgement at the latest).
            if let Poll::Ready(Err(e)) = this.poll_goaway(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PingGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_goaway(cx))?;
        if matches!(this.state, State::Draining(_) | State::Closed) {
            // The connection is over for the client; hyper's last words go nowhere.
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        let mut frames: SmallVec<[FrameHead; 4]> = SmallVec::new();
        this.outbound.feed(&buf[..n], |frame| frames.push(frame));
        for frame in frames {
            this.on_server_frame(frame);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_goaway(cx))?;
        if matches!(this.state, State::Draining(_) | State::Closed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.state, State::Draining(_) | State::Closed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn scanner_finds_headers_across_any_split() {
        let mut bytes = H2_PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[0; 6]));
        bytes.extend(frame(PING, 0, 0, &[7; 8]));
        bytes.extend(frame(HEADERS, 0x4, 1, &[1, 2, 3]));
        for split in 1..bytes.len() {
            let mut scanner = FrameScanner::new(H2_PREFACE.len());
            let mut seen = Vec::new();
            for piece in bytes.chunks(split) {
                scanner.feed(piece, |f| seen.push((f.kind, f.flags, f.stream)));
            }
            assert_eq!(seen, [(0x4, 0, 0), (PING, 0, 0), (HEADERS, 0x4, 1)]);
            assert!(scanner.at_boundary());
        }
        let mut scanner = FrameScanner::new(0);
        assert!(!scanner.at_boundary(), "nothing written yet");
        scanner.feed(&frame(DATA, 0, 1, &[0; 10])[..12], |_| {});
        assert!(!scanner.at_boundary(), "in the middle of a payload");
    }

    #[test]
    fn policy_tolerates_two_strikes_and_forgives_after_data() {
        let policy = PingPolicy {
            min_time: Duration::from_secs(30),
            permit_without_stream: true,
        };
        let mut guard = PingGuard::new((), policy);
        let t0 = Instant::now();
        guard.on_ping(t0);
        guard.on_ping(t0 + Duration::from_secs(1));
        guard.on_ping(t0 + Duration::from_secs(2));
        assert!(
            matches!(guard.state, State::Serving),
            "two strikes are tolerated"
        );
        // Data sent by the server forgives the strikes so far.
        guard.on_server_frame(FrameHead {
            kind: DATA,
            flags: 0,
            stream: 1,
        });
        guard.on_ping(t0 + Duration::from_secs(3));
        guard.on_ping(t0 + Duration::from_secs(4));
        guard.on_ping(t0 + Duration::from_secs(5));
        assert!(matches!(guard.state, State::Serving));
        guard.on_ping(t0 + Duration::from_secs(6));
        assert!(matches!(guard.state, State::GoAway { sent: 0 }));
        // Pings far enough apart are never strikes.
        let mut calm = PingGuard::new((), policy);
        for i in 0..10 {
            calm.on_ping(t0 + Duration::from_secs(30 * i));
        }
        assert!(matches!(calm.state, State::Serving));
    }

    #[test]
    fn pings_without_a_stream_when_not_permitted() {
        let policy = PingPolicy {
            min_time: Duration::from_secs(1),
            permit_without_stream: false,
        };
        let mut guard = PingGuard::new((), policy);
        let t0 = Instant::now();
        for i in 0..4 {
            guard.on_ping(t0 + Duration::from_secs(60 * i));
        }
        assert!(
            matches!(guard.state, State::GoAway { .. }),
            "idle pings need two hours between them"
        );
        let mut busy = PingGuard::new((), policy);
        busy.on_client_frame(FrameHead {
            kind: HEADERS,
            flags: 0x4,
            stream: 1,
        });
        for i in 0..4 {
            busy.on_ping(t0 + Duration::from_secs(60 * i));
        }
        assert!(
            matches!(busy.state, State::Serving),
            "an open stream allows them"
        );
        busy.on_server_frame(FrameHead {
            kind: HEADERS,
            flags: END_STREAM_OR_ACK,
            stream: 1,
        });
        assert!(busy.open_streams.is_empty());
    }

    #[test]
    fn goaway_frame_layout() {
        let f = goaway_frame(5);
        assert_eq!(&f[..9], &[0, 0, 22, 0x7, 0, 0, 0, 0, 0]);
        assert_eq!(&f[9..13], &[0, 0, 0, 5]);
        assert_eq!(&f[13..17], &[0, 0, 0, 0xb]);
        assert_eq!(&f[17..], b"too_many_pings");
    }
}
