//! [`EtcdClient`]: one lazily connected channel per member, calls that move on to the next
//! member when one cannot serve, the authentication token, and a deadline on every call.
//!
//! A call starts at the member that answered last. A transport failure, a member without a
//! raft leader, or no answer within half the call's deadline moves it to the next member;
//! after a whole round it pauses briefly. Whatever happens, the call ends by its deadline
//! (2 s unless configured), so nothing waits on an unreachable cluster. A write that timed out
//! may still have been applied: callers make their writes safe to repeat (a transaction's
//! compares, an idempotent put).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Response, Status};

use super::error::Failure;
use super::kv::{
    DeleteResult, Get, KeyRange, KeyValue, Put, PutResult, RangeResult, Txn, TxnResult,
};
use super::pb::etcdserverpb as pb;
use super::pb::etcdserverpb::auth_client::AuthClient;
use super::pb::etcdserverpb::kv_client::KvClient;
use super::pb::etcdserverpb::lease_client::LeaseClient;
use super::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use super::{EtcdConfig, EtcdError, EtcdTls};

/// The metadata key etcd reads the authentication token from.
const TOKEN_KEY: &str = "token";

/// The shortest time one attempt is given before the next member is tried.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);

/// The pause after every member failed once, before the next round.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// How often an HTTP/2 ping checks a connection that carries a stream. etcd turns away
/// clients that ping more often than every 5 s.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a ping may go unanswered before the connection is dropped.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer accepted (etcd's own default request limit is 1.5 MiB; a range of many
/// keys can be much larger).
pub(super) const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Keys fetched per page by [`EtcdClient::range_all`].
const PAGE: i64 = 500;

/// A client for one etcd cluster. Cheap to clone: clones share the connections and the token.
#[derive(Clone)]
pub struct EtcdClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.endpoints())
            .finish_non_exhaustive()
    }
}

struct Member {
    address: String,
    channel: Channel,
}

struct Shared {
    members: Vec<Member>,
    /// The member calls try first: the last one that answered. Shared by every call and
    /// stream, so one that found a member down spares the others the wait.
    preferred: AtomicUsize,
    credentials: Option<(String, String)>,
    /// The token of the last authentication; every call and stream sends it.
    token: Mutex<Option<AsciiMetadataValue>>,
    timeout: Duration,
}

/// What one attempt on one member gets.
pub(super) struct Attempt {
    /// The member's channel.
    pub channel: Channel,
    /// The metadata to send (the token, when authenticated).
    pub metadata: MetadataMap,
    /// How long the attempt may take.
    pub timeout: Duration,
}

impl Attempt {
    /// `message` as a request carrying the attempt's metadata and deadline.
    pub fn request<M>(&self, message: M) -> Request<M> {
        let mut request = Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        request
    }
}

/// Why a round of attempts ended without an answer.
enum Attempted {
    Error(EtcdError),
    /// etcd refused the token: authenticate again.
    Token(Status),
}

/// One member's view of the cluster ([`EtcdClient::status`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStatus {
    /// The answering member's ID.
    pub member_id: u64,
    /// The member it takes for the raft leader (0: none).
    pub leader: u64,
    /// The raft term.
    pub raft_term: u64,
    /// The raft index it has committed.
    pub raft_index: u64,
    /// The store revision.
    pub revision: i64,
    /// The member's etcd version.
    pub version: String,
    /// Alarms and problems it reports.
    pub errors: Vec<String>,
    /// The size of its database, in bytes.
    pub db_size: i64,
}

impl MemberStatus {
    /// Whether the answering member is the raft leader.
    pub fn is_leader(&self) -> bool {
        self.leader != 0 && self.leader == self.member_id
    }
}

/// A lease as granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The lease's ID (what keys are attached with).
    pub id: i64,
    /// The time to live etcd granted.
    pub ttl: Duration,
    /// When the lease ends at the latest unless renewed: counted from before the request was
    /// sent, so it is never later than etcd's own deadline.
    pub expires: Instant,
}

/// A lease's remaining life ([`EtcdClient::lease_time_to_live`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease's ID.
    pub id: i64,
    /// Seconds left.
    pub ttl: i64,
    /// The time to live it was granted with, in seconds.
    pub granted_ttl: i64,
    /// The keys attached to it, when asked for.
    pub keys: Vec<Vec<u8>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A status's message with its underlying error, if any.
pub(super) fn describe(status: &Status) -> String {
    use std::error::Error as _;
    let mut text = status.message().to_owned();
    let mut source = status.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn client_tls(tls: &EtcdTls) -> ClientTlsConfig {
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca {
        Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
        None => config.with_webpki_roots(),
    };
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(cert, key));
    }
    config
}

fn member(
    address: &str,
    config: &EtcdConfig,
    tls: Option<&ClientTlsConfig>,
) -> Result<Member, EtcdError> {
    let invalid = |detail: &str| EtcdError::Config(format!("etcd endpoint `{address}`: {detail}"));
    if address.is_empty() || address.contains('/') || address.chars().any(char::is_whitespace) {
        return Err(invalid("expected HOST:PORT"));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| invalid(&format!("expected HOST:PORT ({e})")))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    if endpoint.uri().port_u16().is_none() {
        return Err(invalid("the port is missing"));
    }
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| invalid(&format!("TLS: {e}")))?;
    }
    Ok(Member {
        address: address.to_owned(),
        channel: endpoint.connect_lazy(),
    })
}

impl EtcdClient {
    /// A client for the cluster `config` describes. Nothing is sent yet: each member is
    /// connected on first use (so a daemon can start while etcd is down). Must be called
    /// inside a tokio runtime, which then drives the connections.
    pub fn connect(config: EtcdConfig) -> Result<EtcdClient, EtcdError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(EtcdError::Config(
                "the etcd client must be created inside a tokio runtime".into(),
            ));
        }
        if config.endpoints.is_empty() {
            return Err(EtcdError::Config("no etcd endpoint given".into()));
        }
        let credentials = match (&config.user, &config.password) {
            (Some(user), Some(password)) if !user.is_empty() => {
                Some((user.clone(), password.clone()))
            }
            (Some(_), Some(_)) => return Err(EtcdError::Config("the etcd user is empty".into())),
            (None, None) => None,
            (Some(user), None) => {
                return Err(EtcdError::Config(format!(
                    "the etcd user `{user}` needs a password"
                )));
            }
            (None, Some(_)) => {
                return Err(EtcdError::Config(
                    "an etcd password was given without a user".into(),
                ));
            }
        };
        if config.timeout.is_zero() {
            return Err(EtcdError::Config("the etcd call deadline is zero".into()));
        }
        let tls = config.tls.as_ref().map(client_tls);
        let mut members = Vec::with_capacity(config.endpoints.len());
        for address in &config.endpoints {
            if members.iter().any(|m: &Member| &m.address == address) {
                return Err(EtcdError::Config(format!(
                    "etcd endpoint `{address}` is listed twice"
                )));
            }
            members.push(member(address, &config, tls.as_ref())?);
        }
        Ok(EtcdClient {
            shared: Arc::new(Shared {
                members,
                preferred: AtomicUsize::new(0),
                credentials,
                token: Mutex::new(None),
                timeout: config.timeout,
            }),
        })
    }

    /// The members' addresses, in the configured order.
    pub fn endpoints(&self) -> Vec<String> {
        self.shared
            .members
            .iter()
            .map(|m| m.address.clone())
            .collect()
    }

    /// The deadline of every unary call.
    pub fn timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// Marks member `index` as having let a call or stream down: the next ones start at the
    /// member after it (unless another one already moved on).
    pub(super) fn demote(&self, index: usize) {
        let next = (index + 1) % self.shared.members.len();
        let _ = self.shared.preferred.compare_exchange(
            index,
            next,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The address of member `index`.
    pub(super) fn address(&self, index: usize) -> &str {
        self.shared
            .members
            .get(index)
            .map_or("", |m| m.address.as_str())
    }

    /// Runs `call` on the members in turn, from the preferred one, until one answers or
    /// `deadline` passes. `metadata` goes with every attempt.
    async fn try_members<T, F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        metadata: &MetadataMap,
        only: Option<usize>,
        call: &F,
    ) -> Result<(T, usize), Attempted>
    where
        F: Fn(Attempt) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let members = self.shared.members.len();
        let mut index =
            only.unwrap_or_else(|| self.shared.preferred.load(Ordering::Relaxed) % members);
        let spread = only.is_none() && members > 1;
        let mut failed = 0usize;
        let mut last = String::from("no attempt could be made");
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Attempted::Error(EtcdError::Unavailable(format!(
                    "{what}: no etcd member answered within {:?} (last: {last})",
                    self.shared.timeout
                ))));
            }
            let remaining = deadline - now;
            let timeout = if spread {
                remaining.min((self.shared.timeout / 2).max(MIN_ATTEMPT))
            } else {
                remaining
            };
            let member = &self.shared.members[index];
            let attempt = Attempt {
                channel: member.channel.clone(),
                metadata: metadata.clone(),
                timeout,
            };
            match tokio::time::timeout(timeout, call(attempt)).await {
                Ok(Ok(value)) => {
                    if only.is_none() {
                        self.shared.preferred.store(index, Ordering::Relaxed);
                    }
                    return Ok((value, index));
                }
                Ok(Err(status)) => match Failure::of(&status) {
                    Failure::Retry => last = format!("{}: {}", member.address, describe(&status)),
                    Failure::Token => return Err(Attempted::Token(status)),
                    Failure::Final => {
                        return Err(Attempted::Error(EtcdError::from_status(what, &status)));
                    }
                },
                Err(_) => last = format!("{}: no answer within {timeout:?}", member.address),
            }
            if only.is_none() {
                self.demote(index);
            }
            failed += 1;
            index = if spread { (index + 1) % members } else { index };
            if !spread || failed.is_multiple_of(members) {
                tokio::time::sleep_until((Instant::now() + ROUND_PAUSE).min(deadline)).await;
            }
        }
    }

    /// Runs `call` on the members with the token (authenticating first when needed, and
    /// once more when etcd refuses the token), within `deadline`. Returns the answer and the
    /// index of the member that gave it.
    pub(super) async fn attempt<T, F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        only: Option<usize>,
        metadata: MetadataMap,
        call: F,
    ) -> Result<(T, usize), EtcdError>
    where
        F: Fn(Attempt) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut renewed = false;
        loop {
            let mut metadata = metadata.clone();
            if let Some(token) = self.token(deadline).await? {
                metadata.insert(TOKEN_KEY, token);
            }
            match self
                .try_members(what, deadline, &metadata, only, &call)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(Attempted::Error(e)) => return Err(e),
                Err(Attempted::Token(status)) => {
                    if self.shared.credentials.is_none() || renewed {
                        return Err(EtcdError::from_status(what, &status));
                    }
                    renewed = true;
                    *lock(&self.shared.token) = None;
                }
            }
        }
    }

    /// The token to send: none without credentials; otherwise the last one, or a new one.
    async fn token(&self, deadline: Instant) -> Result<Option<AsciiMetadataValue>, EtcdError> {
        let Some((user, password)) = &self.shared.credentials else {
            return Ok(None);
        };
        if let Some(token) = lock(&self.shared.token).clone() {
            return Ok(Some(token));
        }
        let message = pb::AuthenticateRequest {
            name: user.clone(),
            password: password.clone(),
        };
        let call = |attempt: Attempt| {
            let request = attempt.request(message.clone());
            async move {
                let mut client = AuthClient::new(attempt.channel);
                client.authenticate(request).await.map(Response::into_inner)
            }
        };
        let answer = self
            .try_members("authenticate", deadline, &MetadataMap::new(), None, &call)
            .await;
        let response = match answer {
            Ok((response, _)) => response,
            Err(Attempted::Error(e)) => return Err(e),
            Err(Attempted::Token(status)) => {
                return Err(EtcdError::from_status("authenticate", &status));
            }
        };
        let token = AsciiMetadataValue::try_from(response.token)
            .map_err(|_| EtcdError::Protocol("the authentication token is not ASCII".into()))?;
        *lock(&self.shared.token) = Some(token.clone());
        Ok(Some(token))
    }

    /// One unary call with the default deadline.
    async fn unary<M, R, F, Fut>(&self, what: &str, message: M, call: F) -> Result<R, EtcdError>
    where
        M: Clone,
        F: Fn(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        self.unary_on(what, None, message, call).await
    }

    /// One unary call with the default deadline, on member `only` or on any.
    async fn unary_on<M, R, F, Fut>(
        &self,
        what: &str,
        only: Option<usize>,
        message: M,
        call: F,
    ) -> Result<R, EtcdError>
    where
        M: Clone,
        F: Fn(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let deadline = Instant::now() + self.shared.timeout;
        let attempt = |attempt: Attempt| {
            let request = attempt.request(message.clone());
            let answer = call(attempt.channel, request);
            async move { answer.await.map(Response::into_inner) }
        };
        let (answer, _) = self
            .attempt(what, deadline, only, MetadataMap::new(), attempt)
            .await?;
        Ok(answer)
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>, EtcdError> {
        let result = self.range(Get::new(KeyRange::key(key))).await?;
        Ok(result.kvs.into_iter().next())
    }

    /// One read (up to its limit).
    pub async fn range(&self, get: Get) -> Result<RangeResult, EtcdError> {
        let answer = self
            .unary("range", get.to_pb(), |channel, request| async move {
                kv(channel).range(request).await
            })
            .await?;
        Ok(answer.into())
    }

    /// Every key of the read, fetched in pages all as of the store revision of the first
    /// (so the result is one consistent state however many keys there are).
    pub async fn range_all(&self, get: Get) -> Result<RangeResult, EtcdError> {
        let first = self.range(get.clone().limit(PAGE)).await?;
        let mut out = RangeResult {
            revision: first.revision,
            count: first.count,
            more: false,
            kvs: first.kvs,
        };
        let mut more = first.more;
        while more {
            let Some(last) = out.kvs.last() else { break };
            let mut next = last.key.clone();
            next.push(0);
            let page = self
                .range(get.continued(next, out.revision).limit(PAGE))
                .await?;
            more = page.more && !page.kvs.is_empty();
            out.kvs.extend(page.kvs);
        }
        Ok(out)
    }

    /// One write.
    pub async fn put(&self, put: Put) -> Result<PutResult, EtcdError> {
        let answer = self
            .unary("put", put.to_pb(), |channel, request| async move {
                kv(channel).put(request).await
            })
            .await?;
        Ok(answer.into())
    }

    /// Deletes one key or a range.
    pub async fn delete(&self, range: KeyRange) -> Result<DeleteResult, EtcdError> {
        let message = pb::DeleteRangeRequest {
            key: range.start().to_vec(),
            range_end: range.end().to_vec(),
            prev_kv: false,
        };
        let answer = self
            .unary("delete", message, |channel, request| async move {
                kv(channel).delete_range(request).await
            })
            .await?;
        Ok(answer.into())
    }

    /// One transaction.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResult, EtcdError> {
        let answer = self
            .unary("txn", txn.to_pb(), |channel, request| async move {
                kv(channel).txn(request).await
            })
            .await?;
        TxnResult::try_from(answer)
    }

    /// Forgets the store's history before `revision` (etcd's MVCC compaction). Compacting at
    /// or before the last compaction is not an error. With `physical`, answers once the space
    /// is reclaimed.
    pub async fn compact(&self, revision: i64, physical: bool) -> Result<(), EtcdError> {
        let message = pb::CompactionRequest { revision, physical };
        let answer = self
            .unary("compact", message, |channel, request| async move {
                kv(channel).compact(request).await
            })
            .await;
        match answer {
            Ok(_) | Err(EtcdError::Compacted(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Grants a lease of `ttl` (whole seconds, at least one; etcd may grant more).
    pub async fn lease_grant(&self, ttl: Duration) -> Result<Lease, EtcdError> {
        let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        let sent = Instant::now();
        let answer = self
            .unary(
                "lease grant",
                pb::LeaseGrantRequest { ttl: seconds, id: 0 },
                |channel, request| async move { LeaseClient::new(channel).lease_grant(request).await },
            )
            .await?;
        if !answer.error.is_empty() {
            return Err(EtcdError::Rejected {
                code: tonic::Code::Unknown,
                message: answer.error,
            });
        }
        let ttl = Duration::from_secs(u64::try_from(answer.ttl).unwrap_or(0));
        Ok(Lease {
            id: answer.id,
            ttl,
            expires: sent + ttl,
        })
    }

    /// Ends lease `id` now (its keys are deleted). A lease that no longer exists is not an
    /// error.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        let answer = self
            .unary(
                "lease revoke",
                pb::LeaseRevokeRequest { id },
                |channel, request| async move { LeaseClient::new(channel).lease_revoke(request).await },
            )
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(e) if e.is_lease_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// How long lease `id` has left (`None`: it does not exist), with its keys if asked.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<Option<LeaseInfo>, EtcdError> {
        let answer = self
            .unary(
                "lease time to live",
                pb::LeaseTimeToLiveRequest { id, keys },
                |channel, request| async move {
                    LeaseClient::new(channel).lease_time_to_live(request).await
                },
            )
            .await;
        match answer {
            Ok(r) if r.ttl < 0 => Ok(None),
            Ok(r) => Ok(Some(LeaseInfo {
                id: r.id,
                ttl: r.ttl,
                granted_ttl: r.granted_ttl,
                keys: r.keys,
            })),
            Err(e) if e.is_lease_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The status of whichever member answers first.
    pub async fn status(&self) -> Result<MemberStatus, EtcdError> {
        self.status_on(None).await
    }

    /// The status of member `index` (in the order of [`EtcdClient::endpoints`]), asked of that
    /// member alone.
    pub async fn member_status(&self, index: usize) -> Result<MemberStatus, EtcdError> {
        if index >= self.shared.members.len() {
            return Err(EtcdError::Config(format!(
                "there is no etcd member {index}"
            )));
        }
        self.status_on(Some(index)).await
    }

    async fn status_on(&self, only: Option<usize>) -> Result<MemberStatus, EtcdError> {
        let answer = self
            .unary_on("status", only, pb::StatusRequest {}, |channel, request| async move {
                MaintenanceClient::new(channel).status(request).await
            })
            .await?;
        let header = answer.header.unwrap_or_default();
        Ok(MemberStatus {
            member_id: header.member_id,
            leader: answer.leader,
            raft_term: answer.raft_term,
            raft_index: answer.raft_index,
            revision: header.revision,
            version: answer.version,
            errors: answer.errors,
            db_size: answer.db_size,
        })
    }
}

fn kv(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_settings_are_refused_with_the_reason() {
        let check = |config: EtcdConfig, expected: &str| {
            let err = EtcdClient::connect(config).unwrap_err();
            assert!(err.to_string().contains(expected), "{err} lacks {expected}");
        };
        check(EtcdConfig::new(Vec::<String>::new()), "no etcd endpoint");
        check(EtcdConfig::new(["127.0.0.1"]), "port is missing");
        check(EtcdConfig::new(["http://127.0.0.1:2379"]), "HOST:PORT");
        check(EtcdConfig::new(["a:1", "a:1"]), "listed twice");
        let mut config = EtcdConfig::new(["a:1"]);
        config.user = Some("root".into());
        check(config, "needs a password");
        let mut config = EtcdConfig::new(["a:1"]);
        config.password = Some("x".into());
        check(config, "without a user");
    }

    #[test]
    fn connecting_outside_a_runtime_is_an_error_not_a_panic() {
        let err = EtcdClient::connect(EtcdConfig::new(["127.0.0.1:2379"])).unwrap_err();
        assert!(err.to_string().contains("tokio runtime"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_cluster_fails_by_the_deadline() {
        // Ports nothing listens on: every attempt is refused, and the call gives up in time.
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addresses = [a.local_addr().unwrap(), b.local_addr().unwrap()];
        drop((a, b));
        let mut config = EtcdConfig::new(addresses.iter().map(ToString::to_string));
        config.timeout = Duration::from_millis(600);
        let client = EtcdClient::connect(config).unwrap();
        let started = std::time::Instant::now();
        let err = client.get("/k").await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "gave up only after {:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains("no etcd member answered"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_member_is_given_up_on_by_the_deadline() {
        // A listener that accepts but never speaks HTTP/2: the call must not hang.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = silent.local_addr().unwrap().to_string();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let mut config = EtcdConfig::new([address]);
        config.timeout = Duration::from_millis(500);
        let client = EtcdClient::connect(config).unwrap();
        let err = client.status().await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        holder.abort();
    }
}
