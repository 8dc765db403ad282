//! Structured JSON logs, one object per line, level from LOG_LEVEL (default info). A line written
//! during an invocation carries `span: {name: "invocation", request_id, xray_trace_id}`.
//!
//! LOG_LEVEL sets the level of this project's crates only; every other crate (the AWS SDK,
//! hyper, reqwest, rustls) logs warnings and errors at most, whatever LOG_LEVEL says: at debug or
//! trace the SDK writes whole requests and responses, and a Query response holds every
//! subscription's `secrets`.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The crates whose logs LOG_LEVEL governs: the library and the six functions.
pub(crate) const OWN_CRATES: &[&str] = &[
    "dataflows_shared",
    "sms",
    "operations",
    "contacts",
    "messaging",
    "performance",
    "admin",
];

/// The filter directives for a LOG_LEVEL: `warn` for everything, the level for ours. A level
/// that is not one of error, warn, info, debug, trace (any case) is `info`.
pub(crate) fn directives(level: &str) -> String {
    let level = match level.trim().to_ascii_lowercase().as_str() {
        l @ ("error" | "warn" | "info" | "debug" | "trace") => l.to_string(),
        _ => "info".to_string(),
    };
    let global = if level == "error" { "error" } else { "warn" };
    let mut out = global.to_string();
    for krate in OWN_CRATES {
        out.push_str(&format!(",{krate}={level}"));
    }
    out
}

pub(crate) fn init() {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(directives(&level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .fmt_fields(JsonFields::new())
        .event_format(JsonLines)
        .with_writer(&STDOUT)
        .with_env_filter(filter)
        .try_init();
}

/// Write the lines gathered so far ([`Gathered`]). The runtime calls it before its thread waits
/// (`on_thread_park`, see `app::main`), and the handler before it answers.
pub(crate) fn write_gathered() {
    STDOUT.write_out();
}

/// A line that does not go through tracing (the EMF metric lines), among the gathered ones and in
/// their order.
pub(crate) fn write_line(line: &str) {
    let mut out = Vec::with_capacity(line.len() + 1);
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    STDOUT.add(&out, false);
}

/// Lines gathered beyond this are written at once: a long stretch of work keeps at most this
/// much unwritten (about 40 lines of a delivered webhook).
pub(crate) const GATHER_AT_MOST: usize = 16 * 1024;

static STDOUT: Gathered<std::io::Stdout> = Gathered::new(std::io::stdout);

/// The log lines of one stretch of work, written together when the thread is about to wait for
/// the network or the clock ([`write_gathered`]), instead of one `write` per line: a webhook's
/// INFO line cost it a system call of its own and woke the process reading the log pipe (the
/// Lambda service; docs/performance.md, "Seventh pass"). WARN and ERROR lines are written at
/// once, after the lines gathered before them, so that a problem is never behind a wait; so is a
/// stretch that has gathered [`GATHER_AT_MOST`]. A process killed (SIGKILL) in the middle of a
/// stretch loses that stretch's INFO lines, at most a few milliseconds' worth: the webhooks'
/// outcomes are in the claims table, and the lines written before are whole.
pub(crate) struct Gathered<W: std::io::Write> {
    state: std::sync::Mutex<(Vec<u8>, Option<W>)>,
    open: fn() -> W,
}

impl<W: std::io::Write> Gathered<W> {
    pub(crate) const fn new(open: fn() -> W) -> Self {
        Gathered {
            state: std::sync::Mutex::new((Vec::new(), None)),
            open,
        }
    }

    fn add(&self, line: &[u8], at_once: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.extend_from_slice(line);
        if at_once || state.0.len() >= GATHER_AT_MOST {
            Self::write(&mut state, self.open);
        }
    }

    pub(crate) fn write_out(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.0.is_empty() {
            Self::write(&mut state, self.open);
        }
    }

    fn write(state: &mut (Vec<u8>, Option<W>), open: fn() -> W) {
        let (pending, out) = state;
        let out = out.get_or_insert_with(open);
        // Nowhere else to say that the log cannot be written; the lines are dropped either way.
        let _ = out.write_all(pending).and_then(|()| out.flush());
        pending.clear();
    }
}

/// One event's line on its way into a [`Gathered`].
pub(crate) struct Line<'a, W: std::io::Write> {
    to: &'a Gathered<W>,
    at_once: bool,
}

impl<W: std::io::Write> std::io::Write for Line<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.to.add(buf, self.at_once);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a, W: std::io::Write + 'static> tracing_subscriber::fmt::MakeWriter<'a> for &'static Gathered<W> {
    type Writer = Line<'static, W>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            to: self,
            at_once: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        Line {
            to: self,
            at_once: *meta.level() <= tracing::Level::WARN,
        }
    }
}

/// The JSON line of one event, written straight into the line buffer: the shape of
/// tracing-subscriber's `json().flatten_event(true).with_current_span(true)` (timestamp, level, the
/// event's fields, `span` with the invocation's fields and its name), without what makes that
/// one slow on a line per webhook: every field through a `serde_json::Value` and the span's
/// fields parsed back from their JSON text for every line (docs/performance.md, "Delivery close
/// to the wire").
pub(crate) struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = String::with_capacity(512);
        line.push_str("{\"timestamp\":\"");
        push_timestamp(&mut line, chrono::Utc::now());
        line.push_str("\",\"level\":\"");
        line.push_str(event.metadata().level().as_str());
        line.push('"');
        event.record(&mut FieldsVisitor(&mut line));
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            line.push_str(",\"span\":{");
            let extensions = span.extensions();
            // The span's fields as the JSON field formatter stored them: an object's text.
            let fields = extensions
                .get::<FormattedFields<N>>()
                .map(|f| f.fields.as_str())
                .unwrap_or_default();
            let inner = fields
                .trim()
                .strip_prefix('{')
                .and_then(|f| f.strip_suffix('}'))
                .unwrap_or_default();
            if !inner.trim().is_empty() {
                line.push_str(inner);
                line.push(',');
            }
            line.push_str("\"name\":");
            push_json_str(&mut line, span.name());
            line.push('}');
        }
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

/// The event's fields as `,"name":value` pairs.
struct FieldsVisitor<'a>(&'a mut String);

impl FieldsVisitor<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(',');
        push_json_str(self.0, field.name().strip_prefix("r#").unwrap_or(field.name()));
        self.0.push(':');
    }
}

impl Visit for FieldsVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.0, "{value}");
        } else {
            self.0.push_str("null");
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.0.push_str(itoa::Buffer::new().format(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.0.push_str(itoa::Buffer::new().format(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.0.push_str(if value { "true" } else { "false" });
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_str(self.0, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        // Display and Debug values are formatted once, into a scratch buffer, then escaped.
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        push_json_str(self.0, &text);
    }
}

/// Whether any byte of `text` must be escaped in a JSON string (a control character, `"` or `\`),
/// eight bytes at a time: this runs over every string of every log line and PartiQL batch, in a
/// crate built for size, where a byte-by-byte loop is not vectorised. Each test is exact for "any
/// byte of the word" (`x - 0x01..01 * n & !x & 0x80..80` is non-zero iff a byte is below `n`,
/// for `n <= 0x80`; a byte equal to `c` is a zero byte of `x ^ c..c`).
fn needs_escape(text: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let mut words = text.chunks_exact(8);
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        if below(x, 0x20) | below(x ^ (ONES * b'"' as u64), 1) | below(x ^ (ONES * b'\\' as u64), 1) != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// `bytes` as lower-case hex digits (webhook ids, SigV4's digests): no `format!` per byte.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
}

/// `text` as a JSON string.
pub(crate) fn push_json_str(out: &mut String, text: &str) {
    if !needs_escape(text.as_bytes()) {
        out.reserve(text.len() + 2);
        out.push('"');
        out.push_str(text);
        out.push('"');
        return;
    }
    out.push('"');
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's default timer writes it.
fn push_timestamp(out: &mut String, now: chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike, Timelike};
    // Digit by digit, not through `write!`: this runs for every line.
    let mut digits = |value: u32, width: u32, then: char| {
        for place in (0..width).rev() {
            out.push(char::from(b'0' + (value / 10u32.pow(place) % 10) as u8));
        }
        out.push(then);
    };
    digits(now.year().clamp(0, 9999) as u32, 4, '-');
    digits(now.month(), 2, '-');
    digits(now.day(), 2, 'T');
    digits(now.hour(), 2, ':');
    digits(now.minute(), 2, ':');
    digits(now.second(), 2, '.');
    digits(now.nanosecond() % 1_000_000_000 / 1_000, 6, 'Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn timestamps_are_rfc3339_in_microseconds() {
        for (secs, nanos) in [
            (0, 0),
            (1_765_000_000, 123_456_789),
            (1_700_000_000, 1_000),
            (4_102_444_799, 999_999_999),
        ] {
            let t = chrono::DateTime::from_timestamp(secs, nanos).expect("in range");
            let mut out = String::new();
            push_timestamp(&mut out, t);
            assert_eq!(out, t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        }
    }

    /// Lines written by a subscriber, to compare formats.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn emit() {
        let span = tracing::info_span!(
            "invocation",
            request_id = "req-1",
            xray_trace_id = tracing::field::Empty
        );
        span.record("xray_trace_id", "Root=1-abc");
        let _entered = span.enter();
        let error = std::io::Error::other("receiver said \"no\"\n\tat\u{1} once");
        tracing::info!(
            event_id = "evt_1",
            account_id = %"acc \\ 1",
            attempt = 2u32,
            delta = -3i64,
            rate = 0.25f64,
            ok = true,
            error = %error,
            next = ?Some("retry"),
            "webhook delivered to \"ünïcode\""
        );
        drop(_entered);
        tracing::warn!(outside = "no span", "after");
    }

    fn parsed(bytes: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                let t = v.as_object_mut().unwrap().remove("timestamp").expect("a timestamp");
                assert!(chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap()).is_ok(), "{t}");
                v
            })
            .collect()
    }

    #[test]
    fn lines_are_the_json_formats_lines() {
        let ours = Lines::default();
        let theirs = Lines::default();
        let subscriber = {
            let w = ours.clone();
            tracing_subscriber::fmt()
                .fmt_fields(JsonFields::new())
                .event_format(JsonLines)
                .with_writer(move || w.clone())
                .finish()
        };
        tracing::subscriber::with_default(subscriber, emit);
        let reference = {
            let w = theirs.clone();
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_target(false)
                .with_writer(move || w.clone())
                .finish()
        };
        tracing::subscriber::with_default(reference, emit);
        let (ours, theirs) = (parsed(&ours.0.lock().unwrap()), parsed(&theirs.0.lock().unwrap()));
        assert_eq!(ours.len(), 2);
        assert_eq!(ours, theirs);
        assert_eq!(ours[0]["span"]["request_id"], "req-1");
        assert_eq!(ours[0]["error"], "receiver said \"no\"\n\tat\u{1} once");
        assert!(ours[1].get("span").is_none());
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        let long = "0123456789abcdef".repeat(3);
        let mut texts: Vec<String> = [
            "plain",
            "quote \" back \\ slash",
            "ctl \u{0}\u{1f}\n\r\t",
            "ünï 😀",
            "",
            "\u{7f}~ \u{80}",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        // Every special byte at every offset of a word, and bytes next to the boundaries.
        for special in ['"', '\\', '\u{0}', '\u{1f}', '\n', ' ', '!', '#', '[', ']', 'é'] {
            for at in 0..long.len() {
                let mut t = long.clone();
                t.insert(at, special);
                texts.push(t);
            }
        }
        for text in &texts {
            let text = text.as_str();
            let mut out = String::new();
            push_json_str(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    /// What reached the log pipe, one entry per `write`.
    static WRITES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    struct Pipe;

    impl std::io::Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            WRITES.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn info_lines_are_written_together_and_a_warning_at_once() {
        use std::io::Write as _;
        use tracing_subscriber::fmt::MakeWriter as _;
        static GATHERED: Gathered<Pipe> = Gathered::new(|| Pipe);
        let (info, warn) = (&INFO, &WARN);
        let writes = || WRITES.lock().unwrap().clone();
        (&GATHERED).make_writer_for(info).write_all(b"a\n").unwrap();
        (&GATHERED).make_writer_for(info).write_all(b"b\n").unwrap();
        assert!(writes().is_empty(), "INFO lines wait for the end of the stretch");
        GATHERED.write_out();
        assert_eq!(writes(), vec![b"a\nb\n".to_vec()], "both in one write");
        GATHERED.write_out();
        assert_eq!(writes().len(), 1, "nothing gathered, nothing written");

        (&GATHERED).make_writer_for(info).write_all(b"c\n").unwrap();
        (&GATHERED).make_writer_for(warn).write_all(b"w\n").unwrap();
        assert_eq!(
            writes()[1],
            b"c\nw\n".to_vec(),
            "a warning at once, after the lines before it"
        );

        let line = vec![b'x'; 1000];
        for _ in 0..GATHER_AT_MOST / 1000 {
            (&GATHERED).make_writer_for(info).write_all(&line).unwrap();
        }
        assert_eq!(writes().len(), 2, "under the bound: still gathered");
        (&GATHERED).make_writer_for(info).write_all(&line).unwrap();
        assert_eq!(
            writes().len(),
            3,
            "a stretch that gathered the bound is written at once"
        );
        assert_eq!(writes()[2].len(), (GATHER_AT_MOST / 1000 + 1) * 1000);
    }

    /// An INFO and a WARN event's metadata, for asking a `MakeWriter` for its writer: each with
    /// its own callsite, the way tracing's macros declare theirs.
    static INFO_CALLSITE: tracing::callsite::DefaultCallsite = tracing::callsite::DefaultCallsite::new(&INFO);
    static INFO: tracing::Metadata<'static> = event_metadata(tracing::Level::INFO, &INFO_CALLSITE);
    static WARN_CALLSITE: tracing::callsite::DefaultCallsite = tracing::callsite::DefaultCallsite::new(&WARN);
    static WARN: tracing::Metadata<'static> = event_metadata(tracing::Level::WARN, &WARN_CALLSITE);

    const fn event_metadata(
        level: tracing::Level,
        callsite: &'static tracing::callsite::DefaultCallsite,
    ) -> tracing::Metadata<'static> {
        tracing::Metadata::new(
            "event",
            "t",
            level,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(callsite)),
            tracing::metadata::Kind::EVENT,
        )
    }

    #[test]
    fn the_level_reaches_only_our_crates() {
        let d = directives("TRACE");
        assert!(d.starts_with("warn,"), "{d}");
        assert!(d.contains("dataflows_shared=trace") && d.contains("sms=trace"), "{d}");
        assert!(!d.contains("aws") && !d.contains("hyper"), "{d}");
        // A directive smuggled in through LOG_LEVEL is not a level: info.
        assert_eq!(directives("aws_smithy_runtime=trace"), directives("info"));
        assert!(directives("error").starts_with("error,"));
        EnvFilter::try_new(directives("debug")).expect("valid directives");
    }
}
