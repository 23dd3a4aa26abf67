//! The file as written (serde structs, every value with its position) and the checks that
//! turn it into a [`Scenario`].

use std::collections::{BTreeSet, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{
    Arrivals, ClientConfig, ClientGroup, Expect, Holding, Policy, Retry, Scenario, ScenarioError,
    ServerConfig, Start, Stop, Traffic, TransferSize, Workload, trace,
};
use crate::limits::{
    self, MAX_ARRIVAL_RATE, MAX_CLIENTS, MAX_CONCURRENT, MAX_REPLICATIONS, MAX_RETRY_ATTEMPTS,
    MAX_RETRY_MULTIPLIER, MAX_SESSIONS, MAX_SESSIONS_PER_TRANSFER, MAX_SIM_SECONDS, MAX_SIM_TEXT,
    MIN_ARRIVAL_RATE, MIN_SIM_SECONDS,
};
use crate::model::{MAX_PORT, Port, PortRange, ServerOs, SharingRule};
use crate::units::{Bitrate, ByteSize, Duration, Probability, Rate};

/// Default number of replications.
const DEFAULT_REPLICATIONS: u32 = 10;
/// Default handshake timeout: the vendor client gives up after about 20 s (error 15).
const DEFAULT_HANDSHAKE_TIMEOUT_S: f64 = 20.0;
/// Default blocking target for the recommended range.
const DEFAULT_TARGET_BLOCKING: f64 = 0.001;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    name: Spanned<String>,
    description: Option<String>,
    seed: Option<u64>,
    server: Spanned<RawServer>,
    client: Option<RawClient>,
    workload: Spanned<RawWorkload>,
    expect: Option<RawExpect>,
    plan: Option<RawPlan>,
    traffic: Option<RawTraffic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTraffic {
    clients: Option<Spanned<u32>>,
    rate: Option<Spanned<Bitrate>>,
    datagram: Option<Spanned<ByteSize>>,
    duration: Option<Spanned<Duration>>,
    start: Option<Spanned<String>>,
    control_port: Option<Port>,
    size: Option<Spanned<String>>,
    policy: Option<Spanned<String>>,
    min_rate: Option<Spanned<Bitrate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    os: Spanned<String>,
    base_port: Option<Spanned<Port>>,
    udp_port_reuse: Option<Spanned<bool>>,
    max_port: Option<Spanned<Port>>,
    occupied: Option<Spanned<Vec<Port>>>,
    linger: Option<Spanned<Duration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    allowed: Option<Spanned<PortRange>>,
    groups: Option<Vec<Spanned<RawGroup>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    share: Spanned<f64>,
    allowed: PortRange,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    arrivals: Spanned<String>,
    rate: Option<Spanned<Rate>>,
    profile: Option<Spanned<RawProfile>>,
    trace: Option<Spanned<String>>,
    concurrent: Option<Spanned<u64>>,
    think: Option<Spanned<RawHolding>>,
    holding: Option<Spanned<RawHolding>>,
    accounts: Option<Spanned<u64>>,
    sessions_per_transfer: Option<Spanned<u32>>,
    sessions: Option<Spanned<u64>>,
    horizon: Option<Spanned<Duration>>,
    warmup: Option<Spanned<Duration>>,
    replications: Option<Spanned<u32>>,
    handshake_timeout: Option<Spanned<Duration>>,
    retry: Option<Spanned<RawRetry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    step: Spanned<Duration>,
    rates: Spanned<Vec<Rate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHolding {
    dist: Spanned<String>,
    mean: Spanned<Duration>,
    sd: Option<Spanned<Duration>>,
    shape: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: Spanned<u32>,
    backoff: Spanned<Duration>,
    multiplier: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    ports_needed: Option<Spanned<u64>>,
    max_blocking: Option<Spanned<f64>>,
    range: Option<PortRange>,
    peak_port: Option<Port>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    target_blocking: Option<Spanned<f64>>,
}

/// Turns byte offsets into `file:line:column` errors.
pub(super) struct Locator<'a> {
    text: &'a str,
    file: &'a Path,
}

impl<'a> Locator<'a> {
    pub(super) fn new(text: &'a str, file: &'a Path) -> Self {
        Self { text, file }
    }

    fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        (line, column)
    }

    pub(super) fn error(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ScenarioError {
        let (line, column) = self.line_column(span.start);
        ScenarioError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// The directory relative paths in the file are read from.
    fn directory(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// Serde step: syntax, unknown keys, types and units.
pub(super) fn read(text: &str, at: &Locator) -> Result<RawScenario, ScenarioError> {
    let syntax = |e: toml::de::Error| {
        let span = e.span().unwrap_or(0..0);
        at.error(span, "", e.message().trim())
    };
    let deserializer = toml::Deserializer::parse(text).map_err(syntax)?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = key_path(e.path());
        let inner = e.into_inner();
        at.error(inner.span().unwrap_or(0..0), &key, inner.message().trim())
    })
}

/// `workload.rate` from serde's path, without the markers `toml::Spanned` adds.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Map { key: name } if name.starts_with("$__") => {}
            Segment::Map { key: name } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
            }
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    key
}

/// A span of simulated time that may be zero: at most [`MAX_SIM_SECONDS`].
fn sim_duration(
    value: &Spanned<Duration>,
    key: &str,
    at: &Locator,
) -> Result<Duration, ScenarioError> {
    let d = *value.get_ref();
    if d.as_secs_f64() > MAX_SIM_SECONDS {
        return Err(at.error(value.span(), key, format!("must be at most {MAX_SIM_TEXT}")));
    }
    Ok(d)
}

/// A span of simulated time above 0: at least the simulator's resolution of 1 ns (a shorter
/// one rounds to nothing) and at most [`MAX_SIM_SECONDS`].
fn positive_duration(
    value: &Spanned<Duration>,
    key: &str,
    at: &Locator,
) -> Result<Duration, ScenarioError> {
    let d = sim_duration(value, key, at)?;
    if d.as_secs_f64() <= 0.0 {
        return Err(at.error(value.span(), key, "must be above 0"));
    }
    if d.as_secs_f64() < MIN_SIM_SECONDS {
        return Err(at.error(
            value.span(),
            key,
            "must be at least 1ns, the simulator's resolution",
        ));
    }
    Ok(d)
}

/// An arrival rate the simulator can follow: above 0 (unless `zero_ok`), at least one per
/// 10 years and at most 10^9/s.
fn arrival_rate(rate: Rate, zero_ok: bool) -> Result<Rate, String> {
    let per_second = rate.per_second();
    if per_second == 0.0 && zero_ok {
        return Ok(rate);
    }
    if per_second <= 0.0 {
        return Err("must be above 0".into());
    }
    if per_second < MIN_ARRIVAL_RATE {
        let or_zero = if zero_ok { ", or 0" } else { "" };
        return Err(format!("must be at least one per {MAX_SIM_TEXT}{or_zero}"));
    }
    if per_second > MAX_ARRIVAL_RATE {
        return Err(format!(
            "must be at most {MAX_ARRIVAL_RATE:.0e}/s, one per nanosecond of simulated time"
        ));
    }
    Ok(rate)
}

fn holding(raw: &Spanned<RawHolding>, key: &str, at: &Locator) -> Result<Holding, ScenarioError> {
    let h = raw.get_ref();
    let mean = positive_duration(&h.mean, &format!("{key}.mean"), at)?;
    let dist = h.dist.get_ref().as_str();
    let needs = |field: &str| {
        at.error(
            raw.span(),
            &format!("{key}.{field}"),
            format!(
                "{dist} {} needs `{field}`",
                key.rsplit('.').next().unwrap_or(key)
            ),
        )
    };
    let unused = |field: &str, span: Range<usize>| {
        at.error(
            span,
            &format!("{key}.{field}"),
            format!("`{field}` does not apply to {dist}"),
        )
    };
    let result = match dist {
        "exponential" => Holding::Exponential { mean },
        "fixed" => Holding::Fixed { mean },
        "lognormal" => {
            let sd = h.sd.as_ref().ok_or_else(|| needs("sd"))?;
            let sd = positive_duration(sd, &format!("{key}.sd"), at)?;
            Holding::LogNormal { mean, sd }
        }
        "pareto" => {
            let shape = h.shape.as_ref().ok_or_else(|| needs("shape"))?;
            if !(shape.get_ref().is_finite() && *shape.get_ref() > 1.0) {
                return Err(at.error(
                    shape.span(),
                    &format!("{key}.shape"),
                    "must be above 1 (the mean must exist)",
                ));
            }
            Holding::Pareto {
                mean,
                shape: *shape.get_ref(),
            }
        }
        other => {
            return Err(at.error(
                h.dist.span(),
                &format!("{key}.dist"),
                format!("unknown distribution '{other}' (expected exponential, lognormal, fixed or pareto)"),
            ));
        }
    };
    if let (Some(sd), false) = (&h.sd, dist == "lognormal") {
        return Err(unused("sd", sd.span()));
    }
    if let (Some(shape), false) = (&h.shape, dist == "pareto") {
        return Err(unused("shape", shape.span()));
    }
    Ok(result)
}

/// Sessions a horizon holds on average: keeps a run bounded before it starts.
fn expected_sessions(arrivals: &Arrivals, holding: &Holding, horizon: f64) -> f64 {
    match arrivals {
        Arrivals::Poisson { rate } => rate.per_second() * horizon,
        Arrivals::Profile { rates, .. } => {
            let mean = rates.iter().map(Rate::per_second).sum::<f64>() / rates.len().max(1) as f64;
            mean * horizon
        }
        Arrivals::Trace { records, .. } => records.len() as f64,
        Arrivals::Closed { concurrent, think } => {
            let cycle =
                holding.mean().as_secs_f64() + think.map_or(0.0, |t| t.mean().as_secs_f64());
            *concurrent as f64 * horizon / cycle.max(1e-9)
        }
    }
}

/// Refuses a span of simulated time holding more sessions, at the scenario's load, than a
/// replication may start; `(during, fix)` say which span and what to do.
fn sessions_within(
    arrivals: &Arrivals,
    holding: &Holding,
    span: &Spanned<Duration>,
    key: &str,
    (during, fix): (&str, &str),
    at: &Locator,
) -> Result<(), ScenarioError> {
    let expected = expected_sessions(arrivals, holding, span.get_ref().as_secs_f64());
    if expected > MAX_SESSIONS as f64 {
        return Err(at.error(
            span.span(),
            key,
            format!(
                "about {expected:.1e} sessions {during} at this load; at most {MAX_SESSIONS:.0e}: {fix}"
            ),
        ));
    }
    Ok(())
}

fn server(raw: &RawServer, at: &Locator) -> Result<ServerConfig, ScenarioError> {
    let os: ServerOs = raw
        .os
        .get_ref()
        .parse()
        .map_err(|e: crate::model::UnknownOs| {
            at.error(raw.os.span(), "server.os", e.to_string())
        })?;
    let base_port = raw.base_port.as_ref().map_or(33001, |p| *p.get_ref());
    if base_port == 0 {
        let span = raw.base_port.as_ref().map_or(0..0, Spanned::span);
        return Err(at.error(span, "server.base_port", "port 0 is not usable"));
    }
    let max_port = match &raw.max_port {
        Some(p) if *p.get_ref() < base_port => {
            return Err(at.error(
                p.span(),
                "server.max_port",
                format!("{} is below base_port {base_port}", p.get_ref()),
            ));
        }
        Some(p) => *p.get_ref(),
        None => MAX_PORT,
    };
    let udp_port_reuse = match &raw.udp_port_reuse {
        Some(reuse) if os != ServerOs::Linux => {
            return Err(at.error(
                reuse.span(),
                "server.udp_port_reuse",
                format!(
                    "applies to linux only; {} never lets sessions of different keys share a port",
                    os.name()
                ),
            ));
        }
        Some(reuse) => *reuse.get_ref(),
        None => true,
    };
    let mut occupied = BTreeSet::new();
    if let Some(ports) = &raw.occupied {
        for &port in ports.get_ref() {
            if port == 0 {
                return Err(at.error(ports.span(), "server.occupied", "port 0 is not usable"));
            }
            occupied.insert(port);
        }
        if (base_port..=max_port).all(|p| occupied.contains(&p)) {
            return Err(at.error(
                ports.span(),
                "server.occupied",
                format!("every port from {base_port} to {max_port} is occupied: the server could never hand one out"),
            ));
        }
    }
    Ok(ServerConfig {
        os,
        udp_port_reuse,
        base_port,
        max_port,
        occupied,
        linger: raw
            .linger
            .as_ref()
            .map(|d| sim_duration(d, "server.linger", at))
            .transpose()?
            .filter(|d| d.as_secs_f64() > 0.0),
    })
}

fn client(
    raw: Option<&RawClient>,
    server: &ServerConfig,
    at: &Locator,
) -> Result<ClientConfig, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(ClientConfig::default());
    };
    let reachable =
        |range: &PortRange, span: Range<usize>, key: &str| match server.unreachable(*range) {
            Some(why) => Err(at.error(
                span,
                key,
                format!("range {range} {why}: no session could pass"),
            )),
            None => Ok(*range),
        };
    let allowed = match &raw.allowed {
        Some(range) => Some(reachable(range.get_ref(), range.span(), "client.allowed")?),
        None => None,
    };
    let mut groups = Vec::new();
    let mut names = HashSet::new();
    let mut total_share = 0.0;
    for (i, group) in raw.groups.iter().flatten().enumerate() {
        let key = |field: &str| format!("client.groups[{i}].{field}");
        let g = group.get_ref();
        let name = g.name.get_ref().trim().to_string();
        if name.is_empty() || name == "default" || !names.insert(name.clone()) {
            return Err(at.error(
                g.name.span(),
                &key("name"),
                format!("'{name}' must be non-empty, unique and not 'default'"),
            ));
        }
        let share = *g.share.get_ref();
        if !(share > 0.0 && share < 1.0) {
            return Err(at.error(
                g.share.span(),
                &key("share"),
                "must be strictly between 0 and 1",
            ));
        }
        total_share += share;
        if total_share >= 1.0 - 1e-12 {
            return Err(at.error(
                g.share.span(),
                &key("share"),
                format!("group shares add up to {total_share}; leave a share for the clients on client.allowed"),
            ));
        }
        let allowed = reachable(&g.allowed, group.span(), &key("allowed"))?;
        groups.push(ClientGroup {
            name,
            share,
            allowed,
        });
    }
    Ok(ClientConfig { allowed, groups })
}

fn workload(
    raw: &Spanned<RawWorkload>,
    rule: SharingRule,
    groups: &[ClientGroup],
    at: &Locator,
    notes: &mut Vec<String>,
) -> Result<Workload, ScenarioError> {
    let w = raw.get_ref();
    let kind = w.arrivals.get_ref().as_str();
    let missing = |field: &str| {
        at.error(
            w.arrivals.span(),
            "workload.arrivals",
            format!("{kind} arrivals need `{field}`"),
        )
    };
    let only_for = |field: &str, span: Range<usize>, kinds: &str| {
        at.error(
            span,
            &format!("workload.{field}"),
            format!("applies to {kinds} arrivals only, not {kind}"),
        )
    };
    let checks: [(&str, Option<Range<usize>>, &str); 5] = [
        ("rate", w.rate.as_ref().map(Spanned::span), "poisson"),
        ("profile", w.profile.as_ref().map(Spanned::span), "profile"),
        ("trace", w.trace.as_ref().map(Spanned::span), "trace"),
        (
            "concurrent",
            w.concurrent.as_ref().map(Spanned::span),
            "closed",
        ),
        ("think", w.think.as_ref().map(Spanned::span), "closed"),
    ];
    for (field, span, kinds) in checks {
        if let (Some(span), false) = (span, kind == kinds) {
            return Err(only_for(field, span, kinds));
        }
    }
    let arrivals = match kind {
        "poisson" => {
            let rate = w.rate.as_ref().ok_or_else(|| missing("rate"))?;
            let checked = arrival_rate(*rate.get_ref(), false)
                .map_err(|e| at.error(rate.span(), "workload.rate", e))?;
            Arrivals::Poisson { rate: checked }
        }
        "profile" => {
            let profile = w
                .profile
                .as_ref()
                .ok_or_else(|| missing("profile"))?
                .get_ref();
            let step = positive_duration(&profile.step, "workload.profile.step", at)?;
            let rates = profile.rates.get_ref().clone();
            for (i, rate) in rates.iter().enumerate() {
                arrival_rate(*rate, true).map_err(|e| {
                    at.error(
                        profile.rates.span(),
                        &format!("workload.profile.rates[{i}]"),
                        e,
                    )
                })?;
            }
            if rates.iter().all(|r| r.per_second() <= 0.0) {
                return Err(at.error(
                    profile.rates.span(),
                    "workload.profile.rates",
                    "needs at least one rate above 0",
                ));
            }
            Arrivals::Profile { step, rates }
        }
        "trace" => {
            let file = w.trace.as_ref().ok_or_else(|| missing("trace"))?;
            let path = at.directory().join(file.get_ref());
            let records = if is_transfer_log(&path) {
                let log = super::translog::read(
                    std::slice::from_ref(&path),
                    super::translog::ReadOptions::default(),
                )
                .map_err(|e| at.error(file.span(), "workload.trace", e.to_string()))?;
                if log.sessions.is_empty() {
                    return Err(at.error(
                        file.span(),
                        "workload.trace",
                        format!(
                            "{}: no session has both its Start and its Stop",
                            path.display()
                        ),
                    ));
                }
                notes.push(format!(
                    "workload.trace: {}",
                    super::translog::summary(&log)
                ));
                super::translog::to_trace(&log)
            } else {
                trace::read(&path).map_err(|e| match e.line {
                    0 => at.error(file.span(), "workload.trace", e.to_string()),
                    _ => e,
                })?
            };
            if let Some(unknown) = records
                .iter()
                .filter_map(|r| r.group.as_deref())
                .find(|g| !groups.iter().any(|known| known.name == *g))
            {
                return Err(at.error(
                    file.span(),
                    "workload.trace",
                    format!(
                        "the trace names group '{unknown}', which no [[client.groups]] declares"
                    ),
                ));
            }
            Arrivals::Trace { path, records }
        }
        "closed" => {
            let concurrent = w.concurrent.as_ref().ok_or_else(|| missing("concurrent"))?;
            if !(1..=MAX_CONCURRENT).contains(concurrent.get_ref()) {
                return Err(at.error(
                    concurrent.span(),
                    "workload.concurrent",
                    format!("must be 1 to {MAX_CONCURRENT}"),
                ));
            }
            let think = w
                .think
                .as_ref()
                .map(|t| holding(t, "workload.think", at))
                .transpose()?;
            Arrivals::Closed {
                concurrent: *concurrent.get_ref(),
                think,
            }
        }
        other => {
            return Err(at.error(
                w.arrivals.span(),
                "workload.arrivals",
                format!("unknown arrivals '{other}' (expected poisson, profile, trace or closed)"),
            ));
        }
    };
    let is_trace = matches!(arrivals, Arrivals::Trace { .. });
    let holding =
        match (&w.holding, is_trace) {
            (Some(h), false) => holding(h, "workload.holding", at)?,
            (None, false) => return Err(at.error(
                raw.span(),
                "workload.holding",
                "missing: how long sessions last, e.g. { dist = \"exponential\", mean = \"10m\" }",
            )),
            (Some(h), true) => {
                return Err(at.error(
                    h.span(),
                    "workload.holding",
                    "a trace gives each session's duration; remove `holding`",
                ));
            }
            // Unused for a trace; the records carry durations.
            (None, true) => Holding::Fixed {
                mean: Duration::from_secs_f64(1.0),
            },
        };
    let accounts = match &w.accounts {
        Some(a) if *a.get_ref() == 0 => {
            return Err(at.error(a.span(), "workload.accounts", "must be at least 1"));
        }
        Some(a) => *a.get_ref(),
        None if rule == SharingRule::PerAccount && !is_trace => {
            return Err(at.error(
                raw.span(),
                "workload.accounts",
                "missing: this server shares ports per account, so the number of accounts sets the range",
            ));
        }
        None => 1,
    };
    let stop = match (&w.sessions, &w.horizon) {
        (Some(s), None) => {
            if !(1..=MAX_SESSIONS).contains(s.get_ref()) {
                return Err(at.error(
                    s.span(),
                    "workload.sessions",
                    format!("must be 1 to {MAX_SESSIONS}"),
                ));
            }
            Stop::Sessions(*s.get_ref())
        }
        (None, Some(h)) => {
            let horizon = positive_duration(h, "workload.horizon", at)?;
            let within = ("per replication", "shorten the horizon or give `sessions`");
            sessions_within(&arrivals, &holding, h, "workload.horizon", within, at)?;
            Stop::Horizon(horizon)
        }
        (Some(_), Some(h)) => {
            return Err(at.error(
                h.span(),
                "workload.horizon",
                "give `sessions` or `horizon`, not both",
            ));
        }
        (None, None) if is_trace => Stop::Sessions(MAX_SESSIONS),
        (None, None) => {
            return Err(at.error(
                raw.span(),
                "workload.sessions",
                "missing: give `sessions = N` or `horizon = \"8h\"`",
            ));
        }
    };
    let replications = match &w.replications {
        Some(r) if !(1..=MAX_REPLICATIONS).contains(r.get_ref()) => {
            return Err(at.error(
                r.span(),
                "workload.replications",
                format!("must be 1 to {MAX_REPLICATIONS}"),
            ));
        }
        Some(r) => *r.get_ref(),
        None => DEFAULT_REPLICATIONS,
    };
    let handshake_timeout = match &w.handshake_timeout {
        Some(t) if t.get_ref().as_secs_f64() > limits::MAX_HANDSHAKE_TIMEOUT.as_secs_f64() => {
            return Err(at.error(
                t.span(),
                "workload.handshake_timeout",
                format!(
                    "must be at most {}s",
                    limits::MAX_HANDSHAKE_TIMEOUT.as_secs()
                ),
            ));
        }
        Some(t) => *t.get_ref(),
        None => Duration::from_secs_f64(DEFAULT_HANDSHAKE_TIMEOUT_S),
    };
    if let Arrivals::Closed { think: None, .. } = arrivals
        && handshake_timeout.as_secs_f64() <= 0.0
    {
        return Err(at.error(
            raw.span(),
            "workload.handshake_timeout",
            "must be above 0 for closed arrivals without `think`: a failed session's source waits this long before the next",
        ));
    }
    let retry = match &w.retry {
        None => None,
        Some(r) => {
            let attempts = &r.get_ref().attempts;
            if !(1..=MAX_RETRY_ATTEMPTS).contains(attempts.get_ref()) {
                return Err(at.error(
                    attempts.span(),
                    "workload.retry.attempts",
                    format!("must be 1 to {MAX_RETRY_ATTEMPTS} (the first attempt included)"),
                ));
            }
            let multiplier = match &r.get_ref().multiplier {
                Some(m)
                    if !(m.get_ref().is_finite()
                        && *m.get_ref() >= 1.0
                        && *m.get_ref() <= MAX_RETRY_MULTIPLIER) =>
                {
                    return Err(at.error(
                        m.span(),
                        "workload.retry.multiplier",
                        format!("must be between 1 and {MAX_RETRY_MULTIPLIER}"),
                    ));
                }
                Some(m) => *m.get_ref(),
                None => 1.0,
            };
            Some(Retry {
                attempts: *attempts.get_ref(),
                backoff: sim_duration(&r.get_ref().backoff, "workload.retry.backoff", at)?,
                multiplier,
            })
        }
    };
    let warmup = match &w.warmup {
        Some(d) => {
            let warmup = sim_duration(d, "workload.warmup", at)?;
            // Sessions of the warm-up are simulated, if not counted: they bound the run too.
            let within = ("during the warm-up", "shorten the warm-up");
            sessions_within(&arrivals, &holding, d, "workload.warmup", within, at)?;
            Some(warmup).filter(|d| d.as_secs_f64() > 0.0)
        }
        None => None,
    };
    let sessions_per_transfer = match &w.sessions_per_transfer {
        Some(k) if !(1..=MAX_SESSIONS_PER_TRANSFER).contains(k.get_ref()) => {
            return Err(at.error(
                k.span(),
                "workload.sessions_per_transfer",
                format!("must be 1 to {MAX_SESSIONS_PER_TRANSFER}"),
            ));
        }
        Some(k) => *k.get_ref(),
        None => 1,
    };
    Ok(Workload {
        arrivals,
        holding,
        accounts,
        sessions_per_transfer,
        stop,
        warmup,
        replications,
        handshake_timeout,
        retry,
    })
}

fn expect(
    raw: Option<&RawExpect>,
    client: &ClientConfig,
    at: &Locator,
) -> Result<Expect, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(Expect::default());
    };
    if let Some(n) = &raw.ports_needed
        && *n.get_ref() == 0
    {
        return Err(at.error(n.span(), "expect.ports_needed", "must be at least 1"));
    }
    if let Some(b) = &raw.max_blocking {
        if !(0.0..=1.0).contains(b.get_ref()) {
            return Err(at.error(b.span(), "expect.max_blocking", "must be between 0 and 1"));
        }
        if client.allowed.is_none() {
            return Err(at.error(
                b.span(),
                "expect.max_blocking",
                "is checked at client.allowed; set that range",
            ));
        }
    }
    Ok(Expect {
        ports_needed: raw.ports_needed.as_ref().map(|n| *n.get_ref()),
        max_blocking: raw.max_blocking.as_ref().map(|b| *b.get_ref()),
        range: raw.range,
        peak_port: raw.peak_port,
    })
}

/// Default blast settings: the vendor's 10 Mbit/s and 1492-byte datagrams, 5 s of data.
const DEFAULT_TRAFFIC_SECONDS: f64 = 5.0;

fn traffic(
    raw: Option<&RawTraffic>,
    workload: &Workload,
    at: &Locator,
) -> Result<Traffic, ScenarioError> {
    let default_clients = match workload.arrivals {
        Arrivals::Closed { concurrent, .. } => u32::try_from(concurrent)
            .unwrap_or(u32::MAX)
            .min(MAX_CLIENTS),
        _ => 10,
    };
    let mut traffic = Traffic {
        clients: default_clients,
        rate: "10Mbps".parse().expect("valid default"),
        datagram: 1492,
        duration: Duration::from_secs_f64(DEFAULT_TRAFFIC_SECONDS),
        start: None,
        control_port: 0,
        size: None,
        policy: Policy::Fixed,
        min_rate: None,
    };
    let Some(raw) = raw else {
        return Ok(traffic);
    };
    if let Some(clients) = &raw.clients {
        if !(1..=MAX_CLIENTS).contains(clients.get_ref()) {
            return Err(at.error(
                clients.span(),
                "traffic.clients",
                format!("must be 1 to {MAX_CLIENTS}"),
            ));
        }
        traffic.clients = *clients.get_ref();
        traffic.start = Some(Start::Together);
    }
    if let Some(rate) = &raw.rate {
        if rate.get_ref().bits_per_second() > limits::MAX_BITRATE_BPS {
            return Err(at.error(
                rate.span(),
                "traffic.rate",
                format!("must be at most {}Gbps", limits::MAX_BITRATE_BPS / 1e9),
            ));
        }
        traffic.rate = *rate.get_ref();
    }
    if let Some(size) = &raw.datagram {
        let bytes = size.get_ref().bytes();
        let min = u64::from(limits::MIN_DATAGRAM);
        let max = u64::from(limits::MAX_DATAGRAM);
        if !(min..=max).contains(&bytes) {
            return Err(at.error(
                size.span(),
                "traffic.datagram",
                format!("must be {min}B to {max}B (the IP packet, headers included)"),
            ));
        }
        traffic.datagram = bytes as u16;
    }
    if let Some(duration) = &raw.duration {
        let d = *duration.get_ref();
        let max = limits::MAX_DURATION;
        if !(d.as_secs_f64() > 0.0 && d.as_secs_f64() <= max.as_secs_f64()) {
            return Err(at.error(
                duration.span(),
                "traffic.duration",
                format!("must be above 0 and at most {}s", max.as_secs()),
            ));
        }
        traffic.duration = d;
    }
    if let Some(start) = &raw.start {
        traffic.start = Some(
            start
                .get_ref()
                .parse()
                .map_err(|e: String| at.error(start.span(), "traffic.start", e))?,
        );
    }
    if let Some(port) = raw.control_port {
        traffic.control_port = port;
    }
    if let Some(size) = &raw.size {
        let text = size.get_ref().trim();
        traffic.size = Some(if text == "holding" {
            TransferSize::Holding
        } else {
            let bytes = text.parse::<ByteSize>().map(|b| b.bytes()).map_err(|e| {
                at.error(size.span(), "traffic.size", format!("{e}, or \"holding\""))
            })?;
            if bytes == 0 || bytes > limits::MAX_TRANSFER_BYTES {
                return Err(at.error(
                    size.span(),
                    "traffic.size",
                    format!(
                        "must be 1B to {}",
                        limits::size_text(limits::MAX_TRANSFER_BYTES)
                    ),
                ));
            }
            TransferSize::Bytes(bytes)
        });
    }
    if let Some(policy) = &raw.policy {
        traffic.policy = Policy::parse(policy.get_ref()).ok_or_else(|| {
            at.error(
                policy.span(),
                "traffic.policy",
                "must be fixed, fair, high or low",
            )
        })?;
    }
    if let Some(min) = &raw.min_rate {
        if min.get_ref().bits_per_second() > traffic.rate.bits_per_second() {
            return Err(at.error(
                min.span(),
                "traffic.min_rate",
                "must be at most traffic.rate",
            ));
        }
        traffic.min_rate = Some(*min.get_ref());
    }
    if traffic.policy != Policy::Fixed && traffic.rate.bits_per_second() == 0.0 {
        return Err(at.error(
            raw.policy.as_ref().map_or(0..0, Spanned::span),
            "traffic.policy",
            "adapts the rate below a ceiling: give traffic.rate (unpaced has none)",
        ));
    }
    Ok(traffic)
}

/// Semantic step: the checks no single key can make.
pub(super) fn validate(raw: RawScenario, at: &Locator) -> Result<Scenario, ScenarioError> {
    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty() {
        return Err(at.error(raw.name.span(), "name", "must not be empty"));
    }
    let server = server(raw.server.get_ref(), at)?;
    let client = client(raw.client.as_ref(), &server, at)?;
    let mut notes = Vec::new();
    let workload = workload(&raw.workload, server.rule(), &client.groups, at, &mut notes)?;
    let expect = expect(raw.expect.as_ref(), &client, at)?;
    let traffic = traffic(raw.traffic.as_ref(), &workload, at)?;
    let target_blocking = match raw.plan.and_then(|p| p.target_blocking) {
        Some(t) => Probability::new(*t.get_ref()).ok_or_else(|| {
            at.error(
                t.span(),
                "plan.target_blocking",
                "must be strictly between 0 and 1",
            )
        })?,
        None => Probability::new(DEFAULT_TARGET_BLOCKING).expect("default is a probability"),
    };
    Ok(Scenario {
        name,
        description: raw.description,
        seed: raw.seed.unwrap_or(1),
        server,
        client,
        workload,
        expect,
        traffic,
        target_blocking,
        file: at.file.to_path_buf(),
        notes,
    })
}

/// Whether a trace file is a transfer log (detected by content) rather than a CSV.
fn is_transfer_log(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(64 << 10);
    std::fs::File::open(path)
        .and_then(|f| f.take(64 << 10).read_to_end(&mut head))
        .is_ok_and(|_| super::translog::looks_like(&head))
}
