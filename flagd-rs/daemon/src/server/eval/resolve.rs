//! Transport-independent evaluation, shared by gRPC, Connect and OFREP: request context and
//! selector from headers, the response metadata, typed single-flag resolution, untyped
//! resolution (OFREP) and bulk resolution with each API's quirks, the evaluation metrics, and
//! the span of the request (when tracing is on).

use std::cell::{Cell, OnceCell, RefCell};

use flagd_evaluator::{Context, ErrorCode, Evaluation, Flag, FlagType, Metadata, Reason};
use http::HeaderMap;
use serde_json::{Map, Value};

use super::error::RequestError;
use crate::context;
use crate::otel::spans::{EvalSpan, FlagOutcome};
use crate::selector::Selector;
use crate::state::AppState;
use crate::store::Snapshot;

/// The header that carries the selector.
pub const SELECTOR_HEADER: &str = "flagd-selector";

/// [`SELECTOR_HEADER`] as a header name, which looks up without parsing the name per request.
static SELECTOR: http::HeaderName = http::HeaderName::from_static(SELECTOR_HEADER);

/// The evaluation APIs served on the port; they differ in a few behaviours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `flagd.evaluation.v1`: a flag without a default variant is FLAG_NOT_FOUND.
    V1,
    /// `flagd.evaluation.v2`: value and variant are optional.
    V2,
    /// The deprecated `schema.v1`: no header-mapped context, no stream deadline.
    Schema,
}

impl Api {
    /// Whether `-H` header mappings apply to this API's context.
    fn maps_headers(self) -> bool {
        !matches!(self, Api::Schema)
    }

    /// The gRPC service name, which names the request's span.
    fn service(self) -> &'static str {
        match self {
            Api::V1 => "flagd.evaluation.v1.Service",
            Api::V2 => "flagd.evaluation.v2.Service",
            Api::Schema => "schema.v1.Service",
        }
    }

    /// The server-side stream deadline for this API.
    pub fn stream_deadline(self, state: &AppState) -> Option<std::time::Duration> {
        match self {
            Api::Schema => None,
            Api::V1 | Api::V2 => state.limits.stream_deadline.filter(|d| !d.is_zero()),
        }
    }
}

/// The selector of a request (`Flagd-Selector` header; absent or empty = all flags).
pub fn selector(headers: &HeaderMap) -> Result<Selector, RequestError> {
    match headers.get(&SELECTOR) {
        None => Ok(Selector::All),
        Some(v) => Ok(Selector::parse(v.to_str().map_err(|_| {
            RequestError::Malformed("the Flagd-Selector header is not valid text".to_owned())
        })?)?),
    }
}

/// A request's own evaluation context, as its transport delivers it.
#[derive(Debug)]
enum RequestContext {
    /// gRPC and Connect: a protobuf `Struct` (absent = empty).
    Struct(Option<pbjson_types::Struct>),
    /// OFREP: a JSON object.
    Json(Map<String, Value>),
}

/// One entry of a response's metadata, borrowed from the selector or the flag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Meta<'a> {
    /// The selector's echo.
    Text(&'a str),
    /// A value of the flag's metadata.
    Json(&'a Value),
}

/// What every evaluation in one request shares: the selector and the evaluation context. The
/// context (request ∪ static values ∪ mapped headers) is assembled the first time a flag's
/// targeting reads it, so resolving a static or disabled flag never converts the request's
/// context at all.
pub struct Call<'h> {
    /// Which flags the request sees.
    pub selector: Selector,
    api: Api,
    state: &'h AppState,
    headers: Option<&'h HeaderMap>,
    request: Cell<Option<RequestContext>>,
    context: OnceCell<Context>,
    /// The request's span; only touched when `traced`, so an untraced request never borrows it.
    span: RefCell<EvalSpan>,
    traced: bool,
    /// `flagd-rs-revision`, when the daemon reports it: read once per request.
    revision: Option<Value>,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("selector", &self.selector)
            .field("api", &self.api)
            .field("context", &self.context.get())
            .finish_non_exhaustive()
    }
}

impl<'h> Call<'h> {
    /// Reads the selector from `headers` and keeps what the context of `api` is made of.
    pub fn new(
        state: &'h AppState,
        api: Api,
        headers: &'h HeaderMap,
        request: Option<pbjson_types::Struct>,
    ) -> Result<Call<'h>, RequestError> {
        Call::with(
            state,
            api,
            headers,
            RequestContext::Struct(request),
            api.service(),
        )
    }

    /// An OFREP request: its context is a JSON object, and it follows v2's rules where the APIs
    /// differ (the `-H` header mapping applies; a flag without a default variant is no error).
    /// `span_name` names the request's span (the OFREP route).
    pub fn json(
        state: &'h AppState,
        headers: &'h HeaderMap,
        request: Map<String, Value>,
        span_name: &'static str,
    ) -> Result<Call<'h>, RequestError> {
        Call::with(
            state,
            Api::V2,
            headers,
            RequestContext::Json(request),
            span_name,
        )
    }

    fn with(
        state: &'h AppState,
        api: Api,
        headers: &'h HeaderMap,
        request: RequestContext,
        span_name: &'static str,
    ) -> Result<Call<'h>, RequestError> {
        let mut span = EvalSpan::start(&state.telemetry, span_name, headers);
        let selector = match selector(headers) {
            Ok(selector) => selector,
            Err(e) => {
                span.fail("invalid_selector");
                return Err(e);
            }
        };
        Ok(Call {
            selector,
            api,
            state,
            headers: api.maps_headers().then_some(headers),
            request: Cell::new(Some(request)),
            context: OnceCell::new(),
            traced: span.is_recording(),
            span: RefCell::new(span),
            revision: state
                .revision
                .as_ref()
                .map(|r| Value::from(r.load(std::sync::atomic::Ordering::Acquire))),
        })
    }

    /// Runs `f` on the request's span, only when it records.
    #[inline]
    fn trace(&self, f: impl FnOnce(&mut EvalSpan)) {
        if self.traced {
            f(&mut self.span.borrow_mut());
        }
    }

    /// Marks the request's span as a bulk evaluation: each flag is counted, not described.
    pub fn trace_bulk(&self) {
        self.trace(EvalSpan::bulk);
    }

    /// Names the span `<service>/<method>`.
    fn trace_method(&self, method: &str) {
        self.trace(|span| span.rename(|| format!("{}/{method}", self.api.service())));
    }

    /// Records a single-flag outcome on the span.
    fn trace_flag(&self, outcome: FlagOutcome<'_>) {
        self.trace(|span| span.flag(outcome, || self.context_id()));
    }

    /// The targeting key, if the context was assembled for this request.
    fn context_id(&self) -> Option<String> {
        match self.context.get()?.get("targetingKey")? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The merged evaluation context (request, static values, headers), built for lookups.
    pub fn context(&self) -> &Context {
        self.context.get_or_init(|| {
            let config = &self.state.context;
            match self.request.take() {
                Some(RequestContext::Json(m)) => context::build_json(m, config, self.headers),
                Some(RequestContext::Struct(s)) => context::build(s, config, self.headers),
                None => context::build(None, config, self.headers),
            }
        })
    }

    /// Evaluates `flag` in this call's context, assembled only if the flag reads it.
    fn evaluate<'f>(&self, flag: &'f Flag, now: i64) -> Evaluation<'f> {
        flag.evaluate_with(|| self.context(), now)
    }

    /// The selector's echo in response metadata: `flagSetId` or `source` with its value.
    pub fn echo(&self) -> Option<(&'static str, &str)> {
        echo(&self.selector)
    }

    /// The response metadata of a flag, every transport's: the selector's echo, then the flag's
    /// metadata (flag-set metadata overlaid by the flag's own) without its nulls. A later entry
    /// with the same key wins, so the flag's metadata overrides the echo.
    pub fn metadata_entries<'c>(
        &'c self,
        flag: &'c Metadata,
    ) -> impl Iterator<Item = (&'c str, Meta<'c>)> + 'c {
        metadata_entries(&self.selector, self.revision.as_ref(), flag)
    }

    /// The `flagd-rs-revision` this request reports, if the daemon reports one.
    pub fn revision(&self) -> Option<&Value> {
        self.revision.as_ref()
    }

    /// [`Call::metadata_entries`] as a protobuf `Struct`.
    fn metadata(&self, flag: &Metadata) -> pbjson_types::Struct {
        let mut md = pbjson_types::Struct::default();
        for (k, v) in self.metadata_entries(flag) {
            let v = match v {
                Meta::Text(s) => pbjson_types::Value {
                    kind: Some(pbjson_types::value::Kind::StringValue(s.to_owned())),
                },
                Meta::Json(v) => context::json_to_proto(v),
            };
            md.fields.insert(k.to_owned(), v);
        }
        md
    }
}

/// A successful typed resolution, borrowing from the snapshot.
#[derive(Debug)]
pub struct Typed<'a, T> {
    /// The value; `None` for DISABLED and for "no default variant" outcomes.
    pub value: Option<T>,
    /// The chosen variant's name.
    pub variant: Option<&'a str>,
    /// The reason string.
    pub reason: &'static str,
    /// Selector echo overlaid by the flag's metadata.
    pub metadata: pbjson_types::Struct,
}

/// The selector's echo in response metadata: `flagSetId` or `source` with its value.
pub fn echo(selector: &Selector) -> Option<(&'static str, &str)> {
    match selector {
        Selector::All => None,
        Selector::FlagSet(id) => Some(("flagSetId", id)),
        Selector::Source(s) => Some(("source", s)),
    }
}

/// The response metadata of a flag under `selector` ([`Call::metadata_entries`]).
/// With `--revision-metadata`, `revision` (the override revision served) comes last as
/// [`REVISION_KEY`].
pub fn metadata_entries<'c>(
    selector: &'c Selector,
    revision: Option<&'c Value>,
    flag: &'c Metadata,
) -> impl Iterator<Item = (&'c str, Meta<'c>)> + 'c {
    echo(selector)
        .map(|(k, v)| (k, Meta::Text(v)))
        .into_iter()
        .chain(
            flag.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, Meta::Json(v))),
        )
        .chain(revision.map(|v| (REVISION_KEY, Meta::Json(v))))
}

/// The flag-metadata key of the override revision a response was served at
/// (`--revision-metadata`).
pub const REVISION_KEY: &str = "flagd-rs-revision";

/// The flag `key` among those `call` selects. A miss is counted in the metrics as a
/// FLAG_NOT_FOUND evaluation.
pub fn lookup<'a>(
    state: &AppState,
    snapshot: &'a Snapshot,
    call: &Call<'_>,
    key: &str,
) -> Result<&'a Flag, RequestError> {
    match snapshot.get(key, &call.selector) {
        Some(found) => Ok(found.flag),
        None => {
            record_error(state, call, key, None, None, ErrorCode::FlagNotFound);
            Err(RequestError::Flag(ErrorCode::FlagNotFound))
        }
    }
}

/// Evaluates `flag` with no expectation of its type (OFREP, where the value is whatever the
/// variant holds), recording it in the metrics as flagd does: on success an impression and a
/// result for the flag, on failure a result with the error code, and the evaluation budget's
/// own counter when the rule ran out of it.
pub fn untyped<'a>(state: &AppState, call: &Call<'_>, flag: &'a Flag, now: i64) -> Evaluation<'a> {
    let evaluation = call.evaluate(flag, now);
    if evaluation.budget_exceeded().is_some() {
        state.metrics.budget_exceeded(flag.key());
    }
    record(
        state,
        call,
        flag.key(),
        flag.flag_set_id(),
        evaluation.variant,
        evaluation.reason.as_str(),
        evaluation.error,
    );
    evaluation
}

/// Resolves `key` as type `T` with `api`'s rules, recording the evaluation in the metrics.
pub fn typed<'a, T: FlagType<'a>>(
    state: &AppState,
    snapshot: &'a Snapshot,
    call: &Call<'_>,
    key: &str,
) -> Result<Typed<'a, T>, RequestError> {
    call.trace_method(method_of(T::NAME));
    let flag = lookup(state, snapshot, call, key)?;
    let set_id = flag.flag_set_id();
    let evaluation = call.evaluate(flag, flagd_evaluator::now_unix_seconds());
    let exceeded = evaluation.budget_exceeded();
    if exceeded.is_some() {
        state.metrics.budget_exceeded(key);
    }
    if evaluation.is_code_default() {
        match call.api {
            // flagd's v1 handlers keep the legacy behaviour for flags without a default variant.
            Api::V1 => {
                record_error(state, call, key, set_id, None, ErrorCode::FlagNotFound);
                return Err(RequestError::Flag(ErrorCode::FlagNotFound));
            }
            Api::V2 => {}
            // The deprecated handler passes the evaluator's internal reason through unchanged.
            Api::Schema => {
                record(state, call, key, set_id, None, "FALLBACK", None);
                return Ok(Typed {
                    value: None,
                    variant: None,
                    reason: "FALLBACK",
                    metadata: call.metadata(evaluation.metadata()),
                });
            }
        }
    }
    let resolution = evaluation.typed::<T>();
    if let Some(code) = resolution.error {
        record_error(state, call, key, set_id, resolution.variant, code);
        return Err(match exceeded {
            Some(what) => RequestError::Budget(what),
            None => RequestError::Flag(code),
        });
    }
    let reason = resolution.reason.as_str();
    record(state, call, key, set_id, resolution.variant, reason, None);
    Ok(Typed {
        value: resolution.value,
        variant: resolution.variant,
        reason,
        metadata: call.metadata(resolution.metadata),
    })
}

/// A flag's value in a bulk response, typed by its default variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnyValue<'a> {
    /// `bool_value`.
    Bool(bool),
    /// `string_value`.
    String(&'a str),
    /// `double_value` (integers too).
    Double(f64),
    /// `object_value`.
    Object(&'a Map<String, Value>),
}

/// The kinds of value a bulk entry can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    String,
    Double,
    Object,
}

impl Kind {
    fn of(v: &Value) -> Option<Kind> {
        match v {
            Value::Bool(_) => Some(Kind::Bool),
            Value::String(_) => Some(Kind::String),
            Value::Number(_) => Some(Kind::Double),
            Value::Object(_) => Some(Kind::Object),
            Value::Null | Value::Array(_) => None,
        }
    }

    fn zero(self) -> AnyValue<'static> {
        static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        match self {
            Kind::Bool => AnyValue::Bool(false),
            Kind::String => AnyValue::String(""),
            Kind::Double => AnyValue::Double(0.0),
            Kind::Object => AnyValue::Object(&EMPTY),
        }
    }

    fn read(self, v: &Value) -> Option<AnyValue<'_>> {
        match (self, v) {
            (Kind::Bool, Value::Bool(b)) => Some(AnyValue::Bool(*b)),
            (Kind::String, Value::String(s)) => Some(AnyValue::String(s)),
            (Kind::Double, Value::Number(n)) => n.as_f64().map(AnyValue::Double),
            (Kind::Object, Value::Object(m)) => Some(AnyValue::Object(m)),
            _ => None,
        }
    }
}

/// One entry of a bulk (ResolveAll) response.
#[derive(Debug)]
pub struct AnyFlag<'a> {
    /// The flag's key.
    pub key: &'a str,
    /// The reason string (`ERROR` for a per-flag failure).
    pub reason: &'static str,
    /// The chosen variant's name (empty when none).
    pub variant: &'a str,
    /// The value, or the type's zero value for DISABLED and errors.
    pub value: AnyValue<'a>,
    /// Selector echo overlaid by the flag's metadata.
    pub metadata: pbjson_types::Struct,
}

/// Evaluates every selected flag for ResolveAll, in store order. Flags without a default
/// variant (or whose default is null or an array) are skipped; per-flag errors become entries
/// with reason `ERROR` and the zero value.
pub fn all<'a>(
    state: &AppState,
    snapshot: &'a Snapshot,
    call: &'a Call<'_>,
) -> impl Iterator<Item = AnyFlag<'a>> + 'a {
    let now = flagd_evaluator::now_unix_seconds();
    let metrics = state.metrics.clone();
    call.trace(|span| {
        span.rename(|| format!("{}/ResolveAll", call.api.service()));
        span.bulk();
    });
    snapshot.iter(&call.selector).filter_map(move |found| {
        let flag = found.flag;
        let (_, default) = flag.default_variant()?;
        let kind = Kind::of(default)?;
        let evaluation: Evaluation<'a> = call.evaluate(flag, now);
        let key = flag.key();
        if evaluation.budget_exceeded().is_some() {
            metrics.budget_exceeded(key);
        }
        let (reason, variant, value) = match (evaluation.error, evaluation.reason, evaluation.value)
        {
            (Some(code), _, _) => {
                metrics.evaluation(
                    key,
                    evaluation.variant.unwrap_or(""),
                    Reason::Error.as_str(),
                    Some(code.as_str()),
                );
                (
                    Reason::Error.as_str(),
                    evaluation.variant.unwrap_or(""),
                    kind.zero(),
                )
            }
            (None, Reason::Disabled, _) | (None, _, None) => {
                let reason = evaluation.reason.as_str();
                metrics.evaluation(key, "", reason, None);
                (reason, "", kind.zero())
            }
            (None, reason, Some(v)) => {
                let variant = evaluation.variant.unwrap_or("");
                match kind.read(v) {
                    Some(value) => {
                        metrics.evaluation(key, variant, reason.as_str(), None);
                        (reason.as_str(), variant, value)
                    }
                    None => {
                        let code = ErrorCode::TypeMismatch.as_str();
                        metrics.evaluation(key, variant, Reason::Error.as_str(), Some(code));
                        (Reason::Error.as_str(), variant, kind.zero())
                    }
                }
            }
        };
        call.trace(|span| span.bulk_entry(reason == Reason::Error.as_str()));
        Some(AnyFlag {
            key,
            reason,
            variant,
            value,
            metadata: call.metadata(evaluation.metadata()),
        })
    })
}

/// The RPC method resolving a flag of type `name` ([`FlagType::NAME`]).
fn method_of(name: &str) -> &'static str {
    match name {
        "boolean" => "ResolveBoolean",
        "string" => "ResolveString",
        "integer" => "ResolveInt",
        "float" => "ResolveFloat",
        "object" => "ResolveObject",
        _ => "Resolve",
    }
}

/// Records one single-flag outcome in the metrics and on the request's span.
fn record(
    state: &AppState,
    call: &Call<'_>,
    key: &str,
    set_id: Option<&str>,
    variant: Option<&str>,
    reason: &str,
    error: Option<ErrorCode>,
) {
    let error = error.map(ErrorCode::as_str);
    state
        .metrics
        .evaluation(key, variant.unwrap_or(""), reason, error);
    call.trace_flag(FlagOutcome {
        key,
        variant,
        reason,
        error,
        set_id,
    });
}

fn record_error(
    state: &AppState,
    call: &Call<'_>,
    key: &str,
    set_id: Option<&str>,
    variant: Option<&str>,
    code: ErrorCode,
) {
    record(
        state,
        call,
        key,
        set_id,
        variant,
        Reason::Error.as_str(),
        Some(code),
    );
}
