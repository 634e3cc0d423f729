//! Fault injection: scripted faults matched by operation and key prefix,
//! and seeded random faults.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What happens to a request hit by a fault.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Answer with this status and an S3 XML error body carrying `code`,
    /// without touching the store (the request body is read and dropped).
    Status { status: u16, code: String },
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Read the request body, then close the connection without a response.
    /// The store is not touched.
    DropConnection,
    /// Handle the request normally (the store IS changed), send the status
    /// and headers, then cut the connection halfway through the body. For
    /// responses without a body (HEAD, 204, empty 200) the connection is
    /// closed instead of answering: "applied, but the answer was lost".
    TruncateBody,
    /// Flip one bit of the request body in transit (the middle byte's lowest), then handle
    /// it: stored damaged unless a Content-MD5 or CRC32C makes the server refuse it.
    CorruptRequest,
    /// Handle the request normally, then flip one bit of the response body's middle byte.
    CorruptResponse,
    /// Answer 200 OK with an S3 `<Error>` body, without touching the store
    /// (what S3 may do for CompleteMultipartUpload and CopyObject).
    ErrorIn200 { code: String },
    /// Answer at once with this status and code, and carry the request out
    /// `delay` later (a server still completing a large upload when the
    /// client hears back: a retried Complete then meets NoSuchUpload, and
    /// the object appears afterwards).
    LateApply {
        delay: Duration,
        status: u16,
        code: String,
    },
    /// Handle the request normally (its answer is made now), then hold the answer until the
    /// gate opens: a client sees a page listed before a change it made meanwhile.
    HoldResponse(Gate),
    /// Hold the request until the gate opens, then handle it: a change still on its way to
    /// the store (an upload the server is slow to take) while the client does something else.
    HoldRequest(Gate),
}

/// Where a held answer waits: the test learns that an answer is held, then lets it go.
#[derive(Debug, Clone)]
pub struct Gate(std::sync::Arc<(tokio::sync::Semaphore, tokio::sync::Semaphore)>);

impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    pub fn new() -> Self {
        Gate(std::sync::Arc::new((
            tokio::sync::Semaphore::new(0),
            tokio::sync::Semaphore::new(0),
        )))
    }

    /// Wait until an answer (or a request) is held here.
    pub async fn held(&self) {
        if let Ok(p) = self.0 .0.acquire().await {
            p.forget();
        }
    }

    /// Let every held answer go, and any that comes later.
    pub fn open(&self) {
        self.0
             .1
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    pub(crate) async fn hold(&self) {
        self.0 .0.add_permits(1);
        let _ = self.0 .1.acquire().await;
    }
}

impl FaultKind {
    /// A status fault: `FaultKind::status(503, "SlowDown")`.
    pub fn status(status: u16, code: &str) -> Self {
        FaultKind::Status {
            status,
            code: code.to_owned(),
        }
    }

    /// 500 InternalError.
    pub fn internal_error() -> Self {
        Self::status(500, "InternalError")
    }

    /// 503 SlowDown.
    pub fn slow_down() -> Self {
        Self::status(503, "SlowDown")
    }

    /// 403 AccessDenied.
    pub fn access_denied() -> Self {
        Self::status(403, "AccessDenied")
    }

    /// 501 NotImplemented.
    pub fn not_implemented() -> Self {
        Self::status(501, "NotImplemented")
    }

    /// Short description, used in the request log.
    pub fn describe(&self) -> String {
        match self {
            FaultKind::Status { status, code } => format!("status {status} {code}"),
            FaultKind::Delay(d) => format!("delay {d:?}"),
            FaultKind::DropConnection => "drop connection".into(),
            FaultKind::TruncateBody => "truncate body".into(),
            FaultKind::CorruptRequest => "corrupt request body".into(),
            FaultKind::CorruptResponse => "corrupt response body".into(),
            FaultKind::ErrorIn200 { code } => format!("200 with error {code}"),
            FaultKind::LateApply {
                delay,
                status,
                code,
            } => format!("status {status} {code}, applied {delay:?} later"),
            FaultKind::HoldResponse(_) => "answer held".into(),
            FaultKind::HoldRequest(_) => "request held".into(),
        }
    }
}

/// A scripted fault. Build with [`Fault::new`] and the builder methods, or
/// as a struct literal with `..Fault::new(kind)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Operation name to match ("UploadPart", ...); `None` matches any.
    pub op: Option<String>,
    /// Only requests whose decoded key starts with this (requests without a
    /// key never match when set).
    pub key_prefix: Option<String>,
    /// Let this many matching requests through before firing.
    pub skip: u32,
    /// Fire this many times, then retire; `None` = forever.
    pub times: Option<u32>,
    pub kind: FaultKind,
}

impl Fault {
    /// Matches every request, forever.
    pub fn new(kind: FaultKind) -> Self {
        Fault {
            op: None,
            key_prefix: None,
            skip: 0,
            times: None,
            kind,
        }
    }

    pub fn op(mut self, op: &str) -> Self {
        self.op = Some(op.to_owned());
        self
    }

    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.key_prefix = Some(prefix.to_owned());
        self
    }

    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, op: &str, key: Option<&str>) -> bool {
        self.op.as_deref().is_none_or(|o| o == op)
            && self
                .key_prefix
                .as_deref()
                .is_none_or(|p| key.is_some_and(|k| k.starts_with(p)))
    }
}

/// Seeded random faults.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomFaults {
    /// Fraction of (matching) requests that fail, 0.0..=1.0.
    pub probability: f64,
    pub seed: u64,
    /// Only these operations; `None` = all.
    pub ops: Option<Vec<String>>,
    /// Picked uniformly for each failing request.
    pub kinds: Vec<FaultKind>,
}

impl RandomFaults {
    /// The default mix: 500 InternalError, 503 SlowDown, dropped connection,
    /// truncated body and a 2 s stall.
    pub fn new(probability: f64, seed: u64) -> Self {
        RandomFaults {
            probability,
            seed,
            ops: None,
            kinds: vec![
                FaultKind::internal_error(),
                FaultKind::slow_down(),
                FaultKind::DropConnection,
                FaultKind::TruncateBody,
                FaultKind::Delay(Duration::from_secs(2)),
            ],
        }
    }
}

/// The fault state of a server.
#[derive(Debug, Default)]
pub struct FaultSet {
    scripted: Vec<Fault>,
    random: Option<(RandomFaults, StdRng)>,
    injected: u64,
}

impl FaultSet {
    pub fn add(&mut self, fault: Fault) {
        self.scripted.push(fault);
    }

    pub fn set_random(&mut self, random: Option<RandomFaults>) {
        self.random = random.map(|r| {
            let rng = StdRng::seed_from_u64(r.seed);
            (r, rng)
        });
    }

    /// Removes scripted and random faults.
    pub fn clear(&mut self) {
        self.scripted.clear();
        self.random = None;
    }

    /// How many faults have fired so far.
    pub fn injected(&self) -> u64 {
        self.injected
    }

    /// Scripted faults still armed.
    pub fn pending(&self) -> Vec<Fault> {
        self.scripted.clone()
    }

    /// The fault for this request, if any. Scripted faults are tried in the
    /// order they were added, then random faults.
    pub fn pick(&mut self, op: &str, key: Option<&str>) -> Option<FaultKind> {
        let mut hit = None;
        for (i, f) in self.scripted.iter_mut().enumerate() {
            if !f.matches(op, key) {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            if let Some(t) = &mut f.times {
                *t -= 1;
            }
            hit = Some((i, f.kind.clone(), f.times == Some(0)));
            break;
        }
        if let Some((i, kind, exhausted)) = hit {
            if exhausted {
                self.scripted.remove(i);
            }
            self.injected += 1;
            return Some(kind);
        }
        let (cfg, rng) = self.random.as_mut()?;
        if cfg.kinds.is_empty()
            || !cfg
                .ops
                .as_ref()
                .is_none_or(|ops| ops.iter().any(|o| o == op))
        {
            return None;
        }
        if rng.gen::<f64>() >= cfg.probability {
            return None;
        }
        let kind = cfg.kinds[rng.gen_range(0..cfg.kinds.len())].clone();
        self.injected += 1;
        Some(kind)
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 => out.push_str(&format!("&#{};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A default message for well-known codes.
fn message_for(code: &str) -> &'static str {
    match code {
        "InternalError" => "We encountered an internal error. Please try again.",
        "SlowDown" => "Please reduce your request rate.",
        "ServiceUnavailable" => "Service is unable to handle request.",
        "AccessDenied" => "Access Denied",
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "RequestTimeout" => "Your socket connection to the server was not read from or written to within the timeout period.",
        _ => "Injected fault.",
    }
}

/// An S3 error document.
pub fn error_xml(code: &str, resource: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
         <Resource>{}</Resource><RequestId>{}</RequestId></Error>",
        xml_escape(code),
        xml_escape(message_for(code)),
        xml_escape(resource),
        xml_escape(request_id)
    )
}

/// Replaces control characters in an XML document by character references,
/// as S3 does for keys in listings (`\u{1}` becomes `&#1;`, `\r` `&#13;`).
pub fn escape_xml_controls(xml: &[u8]) -> Option<Vec<u8>> {
    if !xml.iter().any(|&b| b < 0x20) {
        return None;
    }
    let mut out = Vec::with_capacity(xml.len() + 16);
    // Keep the newline that may follow the XML declaration.
    let decl_end = xml
        .windows(2)
        .position(|w| w == b"?>")
        .map_or(0, |p| p + 2)
        .min(xml.len());
    out.extend_from_slice(&xml[..decl_end]);
    let mut rest = &xml[decl_end..];
    if rest.first() == Some(&b'\n') {
        out.push(b'\n');
        rest = &rest[1..];
    }
    for &b in rest {
        if b < 0x20 {
            out.extend_from_slice(format!("&#{b};").as_bytes());
        } else {
            out.push(b);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_skip_times_and_match() {
        let mut fs = FaultSet::default();
        fs.add(
            Fault::new(FaultKind::slow_down())
                .op("UploadPart")
                .skip(1)
                .times(2),
        );
        fs.add(Fault::new(FaultKind::DropConnection).key_prefix("dir/"));
        assert_eq!(fs.pick("UploadPart", Some("x")), None);
        assert_eq!(
            fs.pick("UploadPart", Some("x")),
            Some(FaultKind::slow_down())
        );
        assert_eq!(fs.pick("PutObject", Some("x")), None);
        assert_eq!(
            fs.pick("UploadPart", Some("x")),
            Some(FaultKind::slow_down())
        );
        assert_eq!(fs.pick("UploadPart", Some("x")), None);
        assert_eq!(fs.pick("ListObjectsV2", None), None);
        assert_eq!(
            fs.pick("GetObject", Some("dir/a")),
            Some(FaultKind::DropConnection)
        );
        assert_eq!(fs.injected(), 3);
        fs.clear();
        assert_eq!(fs.pick("GetObject", Some("dir/a")), None);
    }

    #[test]
    fn random_faults_are_seeded() {
        let run = || {
            let mut fs = FaultSet::default();
            fs.set_random(Some(RandomFaults::new(0.3, 42)));
            (0..200)
                .map(|_| fs.pick("GetObject", Some("k")))
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|f| f.is_some()).count();
        assert!((30..90).contains(&hits), "{hits}");
    }

    #[test]
    fn control_characters_escaped() {
        let xml = b"<?xml version=\"1.0\"?>\n<K>a\x01b\rc</K>";
        let out = escape_xml_controls(xml).unwrap();
        assert_eq!(
            out,
            b"<?xml version=\"1.0\"?>\n<K>a&#1;b&#13;c</K>".to_vec()
        );
        assert!(escape_xml_controls(b"<K>ok</K>").is_none());
    }
}
