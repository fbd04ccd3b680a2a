//! Audit events: the raw event walked once ([`json`]), its free text
//! gathered and screened together, the rewritten original made the
//! event's, and its fields moved to where their strings went (or parsed
//! again when they cannot be moved).

use super::*;

impl Redactor {
    pub(super) fn audit(&self, event: &mut Arc<Event>) -> bool {
        let mut scratch = self.scratch.take();
        let rewritten = match &event.kind {
            EventKind::ApiActivity(a) => self.rewrite_audit(a, &mut scratch),
            _ => None,
        };
        let changed = match rewritten {
            Some((text, must_parse)) => {
                let e = Arc::make_mut(event);
                if let EventKind::ApiActivity(a) = &mut e.kind {
                    let spare = if must_parse {
                        reparse(a, &text);
                        text
                    } else {
                        match remap(a, text, &mut scratch) {
                            Ok(old) => old,
                            Err(text) => {
                                reparse(a, &text);
                                text
                            }
                        }
                    };
                    scratch.recycle(spare);
                }
                self.metrics.count(&scratch.marker);
                e.redaction.merge(&self.marker(&scratch.marker));
                true
            }
            None => false,
        };
        self.scratch.replace(scratch);
        changed
    }

    /// The redacted original of `a` and whether the fields must be parsed
    /// again (they are not all strings of the original), or `None` when
    /// nothing needs to change; `scratch.edits` (their new text in
    /// `scratch.buf`) say what changed, `scratch.marker` what was redacted.
    fn rewrite_audit(&self, a: &ApiActivity, scratch: &mut Scratch) -> Option<(String, bool)> {
        let (resource, subresource) = a
            .object_ref
            .as_ref()
            .map_or(("", ""), |o| (a.s(o.resource), a.s(o.subresource)));
        let original = a.original();
        // Values the rules pseudonymize, to replace wherever else they appear
        // (an authorization reason naming the user, a URI with their name).
        let Scratch {
            edits,
            buf,
            tmp,
            fired,
            pseudonyms,
            candidates,
            batch,
            uri,
            uri_decoded,
            uri_argv,
            marker,
            ..
        } = scratch;
        marker.clear();
        pseudonyms.clear();
        candidates.clear();
        let mut known: [Known<'_>; 4] = Default::default();
        let mut n = 0;
        for rule in &self.rules {
            if !matches!(rule.action, Action::Hash | Action::Replace | Action::Mask) {
                continue;
            }
            for field in ["user.name", "user.id"] {
                if rule.ecs.as_deref() != Some(field) {
                    continue;
                }
                for u in [Some(&a.user), a.impersonated_user.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    let v = a.s(if field == "user.name" {
                        u.username
                    } else {
                        u.uid
                    });
                    if n < known.len() && v.len() >= 3 && !known[..n].iter().any(|(k, _)| *k == v) {
                        let at = pseudonyms.len();
                        self.apply(rule, v, pseudonyms);
                        known[n] = (v, at..pseudonyms.len());
                        n += 1;
                    }
                }
            }
        }
        let k8s_drops = match (resource, subresource) {
            ("secrets", _) => Some(K8sDrops::Secret),
            ("configmaps", _) if self.drop_configmap_data => Some(K8sDrops::ConfigMap),
            ("serviceaccounts", "token") => Some(K8sDrops::TokenRequest),
            ("tokenreviews", _) => Some(K8sDrops::TokenReview),
            _ => None,
        };
        let mut visitor = AuditVisitor {
            r: self,
            base: original.as_ptr() as usize,
            known: &known[..n],
            known_in_text: &known[..n],
            screen: true,
            pseudonyms,
            candidates,
            marker,
            tmp,
            fired,
            wrapped: a.wrapper.as_ref().is_some_and(|w| w.provider == "aks"),
            gke: a.wrapper.as_ref().is_some_and(|w| w.provider == "gke"),
            nested: false,
            must_parse: false,
            secret_name_at: None,
            member_at: (0, 0),
            member_rules: &[],
            k8s_drops,
            may_drop: k8s_drops.is_some() || self.rules.iter().any(|r| r.action == Action::Drop),
            argv: ArgvState::default(),
            uri_at: None,
        };
        json::edits_of(original, &mut visitor, buf, edits);
        // The free text, all at once: one screen over every string
        // (NUL-separated: a NUL is a boundary to every pattern, so a string
        // that has a match keeps it in the batch) and a search for the known
        // values say whether any needs a closer look — most audit events
        // have none.
        let mut candidates = std::mem::take(visitor.candidates);
        batch.clear();
        // A request URI whose query hides text behind encoding: decoded
        // into the batch, screened with the rest (as it is, if it does not
        // decode).
        let mut uri_at = visitor.uri_at.take();
        let mut mysql_p = false;
        if let Some((range, key)) = uri_at.clone() {
            if decode_uri(&original[range.clone()], uri, uri_decoded, uri_argv) {
                batch.push_str(uri_decoded);
                batch.push('\0');
                batch.push_str(uri_argv);
                batch.push('\0');
                mysql_p = argv::is_mysql(
                    lumen_schemas::event::split_argv(uri_argv)
                        .next()
                        .unwrap_or(""),
                ) && argv::has_p_arg(uri_argv);
            } else {
                candidates.push((range, key));
                uri_at = None;
            }
        }
        for (range, _) in &candidates {
            batch.push_str(&original[range.clone()]);
            batch.push('\0');
        }
        visitor.screen = !batch.is_empty() && self.detectors.may_match(batch);
        let known_in_batch = !batch.is_empty()
            && visitor
                .known
                .iter()
                .any(|(k, _)| detect::contains(batch, k));
        if !known_in_batch {
            visitor.known_in_text = &[];
        }
        let walked = edits.len();
        if let Some((range, _)) = uri_at.filter(|_| visitor.screen || known_in_batch || mysql_p) {
            let mark = buf.len();
            if visitor.rewrite_uri(uri, uri_decoded, uri_argv, buf) {
                edits.push(json::Edit {
                    old: range,
                    new: mark..buf.len(),
                    string: true,
                });
            }
        }
        if visitor.screen || known_in_batch {
            for (range, member) in &candidates {
                let mark = buf.len();
                let field = audit_member(&original[member.clone()]);
                if visitor.scrub(&original[range.clone()], field, buf) {
                    edits.push(json::Edit {
                        old: range.clone(),
                        new: mark..buf.len(),
                        string: true,
                    });
                }
            }
        }
        if edits.len() > walked {
            edits.sort_unstable_by_key(|e| e.old.start);
        }
        *visitor.candidates = candidates;
        if edits.is_empty() {
            return None;
        }
        let mut out = std::mem::take(&mut scratch.spare);
        // Room for the unescaped copies `remap` puts after the original.
        let copies = a.text.len().saturating_sub(original.len());
        json::apply(original, edits, buf, copies, &mut out);
        Some((out, visitor.must_parse))
    }
}

/// Makes `raw` (the original with `scratch.edits` applied) the original of
/// `a` and moves every field to where its string went — the same result as
/// parsing `raw` again, without the parse; `Ok` with the text `a` had
/// before. `Err` (with `raw` back) when a field cannot be moved — part of
/// a changed string: `a`'s fields are then half moved, parse `raw` again.
fn remap(a: &mut ApiActivity, mut raw: String, scratch: &mut Scratch) -> Result<String, String> {
    let old_len = a.original_len as usize;
    let Ok(raw_len) = u32::try_from(raw.len()) else {
        return Err(raw);
    };
    let Scratch {
        edits,
        buf,
        shifts,
        fixes,
        fix_text,
        ..
    } = scratch;
    // Where the text before each edit moved: the original's length plus
    // this minus what the edits removed (kept apart to stay unsigned).
    shifts.clear();
    let (mut added, mut removed) = (0usize, 0usize);
    for e in edits.iter() {
        shifts.push(added.wrapping_sub(removed));
        added += e.new.len();
        removed += e.old.len();
    }
    shifts.push(added.wrapping_sub(removed));
    // The original is the rewritten text; only what the fields still
    // reference follows it (an unescaped copy of a redacted value must not
    // stay behind in the buffer). Every field is moved in one pass; if one
    // cannot be, the caller parses `raw` into a fresh `a`, so the fields
    // already moved do not matter.
    let old_text = std::mem::take(&mut a.text);
    let mut ok = true;
    let mut fixed = false;
    a.visit_strs_mut(&mut |s| {
        if !ok || s.is_empty() {
            return;
        }
        let (start, end) = s.bounds();
        if end <= old_len {
            let i = edits.partition_point(|e| e.old.end <= start);
            let moved = |x: usize| x.wrapping_add(shifts[i]);
            *s = match edits.get(i) {
                Some(e) if e.old.start < end => {
                    if e.string && e.old == (start..end) {
                        Str::range(moved(start), moved(start) + e.new.len())
                    } else if !e.string && e.old.start <= start && end <= e.old.end {
                        // In a member a rule removed.
                        Str::EMPTY
                    } else {
                        // Part of a changed string: only the parser knows.
                        ok = false;
                        return;
                    }
                }
                _ => Str::range(moved(start), moved(end)),
            };
        } else {
            // Strings with escapes were parsed into unescaped copies after
            // the original: a changed one needs its copy redone (worked out
            // at the first such field).
            if !fixed {
                fixed = true;
                fixes.clear();
                fix_text.clear();
                for e in edits.iter().filter(|e| e.string) {
                    let Some(before) = old_text.get(e.old.clone()) else {
                        continue;
                    };
                    if memchr::memchr(b'\\', before.as_bytes()).is_none() {
                        continue;
                    }
                    let from = fix_text.len();
                    let good = json::unescape_into(before, fix_text);
                    let mid = fix_text.len();
                    if !(good
                        && buf
                            .get(e.new.clone())
                            .is_some_and(|n| json::unescape_into(n, fix_text)))
                    {
                        ok = false;
                        return;
                    }
                    fixes.push((from..mid, mid..fix_text.len()));
                }
            }
            let value = s.get(&old_text);
            let value = fixes
                .iter()
                .find(|(o, _)| fix_text[o.clone()] == *value)
                .map_or(value, |(_, new)| &fix_text[new.clone()]);
            let at = raw.len();
            raw.push_str(value);
            *s = Str::range(at, raw.len());
        }
    });
    if !ok {
        a.text = old_text;
        raw.truncate(raw_len as usize);
        return Err(raw);
    }
    a.text = raw;
    a.original_len = raw_len;
    a.original_literal = std::sync::OnceLock::new();
    Ok(old_text)
}

/// What [`remap`] cannot do: parses the rewritten original `raw` into `a`
/// (an AKS record's wrapper included).
fn reparse(a: &mut ApiActivity, raw: &str) {
    // Metadata from outside the original (a CloudWatch record's) is not in
    // `raw`: carried over.
    let outer = a.wrapper.take().map(|w| (w, std::mem::take(&mut a.text)));
    *a = match k8s_audit::parse_line(raw) {
        Ok(p) => p,
        Err(e) => {
            // A rule removed something the parser needs: keep nothing
            // rather than the unredacted original.
            tracing::error!(error = %e, "redact: the redacted audit event no longer parses; its original is withheld");
            ApiActivity {
                text: "{}".into(),
                original_len: 2,
                ..Default::default()
            }
        }
    };
    if a.wrapper.is_none() {
        if let Some((w, text)) = outer {
            let moved = w.moved(&text, &mut a.text);
            a.wrapper = Some(moved);
        }
    }
}

/// A `requestURI` as in the JSON text (`raw`), unescaped into `text`, and
/// its path and query decoded into `decoded` and `argv` ([`uri::decode`]).
/// False when it does not unescape or has no query.
fn decode_uri(raw: &str, text: &mut String, decoded: &mut String, argv: &mut String) -> bool {
    text.clear();
    decoded.clear();
    argv.clear();
    if !json::unescape_into(raw, text) {
        return false;
    }
    let Some((path, query)) = text.split_once('?') else {
        return false;
    };
    decoded.push_str(path);
    uri::decode(query, decoded, argv);
    true
}

/// `text` as the inside of a JSON string literal, appended to `out`.
fn push_escaped(out: &mut String, text: &str) -> bool {
    let mut literal = Vec::with_capacity(text.len() + 64);
    lumen_schemas::json::write_escaped(&mut literal, text);
    match std::str::from_utf8(&literal) {
        Ok(l) => {
            out.push_str(&l[1..l.len() - 1]);
            true
        }
        Err(_) => false,
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    json::unescape_into(raw, &mut out).then_some(out)
}

/// Decides for each value of a raw audit event.
struct AuditVisitor<'a> {
    r: &'a Redactor,
    /// Where the original starts in memory: the strings handed over are
    /// slices of it.
    base: usize,
    /// The values rules change, with their replacements in `pseudonyms`.
    known: &'a [Known<'a>],
    /// Those of them free text may contain (none when the screen of the
    /// free text found none).
    known_in_text: &'a [Known<'a>],
    /// Whether free text may hold something a detector finds (`false` when
    /// the screen of all of it found nothing).
    screen: bool,
    pseudonyms: &'a str,
    /// Free text left for the detectors, after the walk.
    candidates: &'a mut Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    marker: &'a mut Redaction,
    tmp: &'a mut String,
    fired: &'a mut Vec<Detector>,
    /// An AKS record: the event is its `properties.log`, an object (whose
    /// paths are taken from there) or an escaped string (rewritten as a
    /// document of its own, `nested` while that runs; the fields then
    /// `must_parse` again).
    wrapped: bool,
    /// A GKE entry: its `protoPayload` members are read as the audit
    /// event's (`request` as `requestObject`, `principalEmail` as
    /// `user.username`, …), so rules and built-in removals apply alike.
    gke: bool,
    nested: bool,
    must_parse: bool,
    /// Where the key of the top-level member the last string was in is,
    /// and the rules' paths into that member.
    member_at: (usize, usize),
    member_rules: &'a [(usize, usize)],
    /// The built-in removal this event's resource has, if any.
    k8s_drops: Option<K8sDrops>,
    /// Whether anything can be dropped from this event (a built-in
    /// Kubernetes removal for its resource, or a `drop` rule).
    may_drop: bool,
    /// The depth of the last `"name": "<secret-ish>"` seen: its sibling
    /// `value` (a container's env var) is a secret.
    secret_name_at: Option<usize>,
    /// Where the body's `command`/`args` array being walked is.
    argv: ArgvState,
    /// Where `requestURI` is in the original when its query needs decoding
    /// (see [`uri`]): decoded into the free-text batch after the walk.
    /// (The string, its key), as in `candidates`.
    uri_at: Option<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

/// A `command` or `args` array of an audit body, as an argv: one element
/// after another.
#[derive(Default)]
struct ArgvState {
    /// Its key, by where it is in the text (as `member_at`).
    array: (usize, usize),
    /// The elements seen so far.
    seen: usize,
    /// The last element was a secret flag: this one is its value.
    value_next: bool,
    /// The depth of the elements of the object's arrays whose `command[0]`
    /// is of the mysql family (its `args` follow; a sibling scalar of
    /// the arrays, the next container's `name`, ends it).
    mysql_depth: Option<usize>,
}

/// What the built-in Kubernetes removals take from an event's bodies, by
/// its resource.
#[derive(Clone, Copy)]
enum K8sDrops {
    /// A Secret's `data`, `stringData` and last-applied annotation.
    Secret,
    /// A ConfigMap's `data` and `binaryData` (with `drop_configmap_data`).
    ConfigMap,
    /// The token a TokenRequest (`serviceaccounts/token`) answers with.
    TokenRequest,
    /// The token a TokenReview is asked about.
    TokenReview,
}

/// No detector matches fewer characters than this (the shortest: an
/// e-mail address `a@b.cd`).
const MIN_DETECTABLE: usize = 6;

/// Values whose format leaves no room for personal data (ids, versions,
/// timestamps, enumerations): detectors skip them.
fn structural(path: &[Seg<'_>]) -> bool {
    match path.last() {
        Some(Seg::Key(k)) => matches!(
            *k,
            "kind"
                | "apiVersion"
                | "level"
                | "auditID"
                | "stage"
                | "verb"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "requestReceivedTimestamp"
                | "stageTimestamp"
                | "lastTransitionTime"
                | "startedAt"
                | "finishedAt"
                | "apiGroup"
                | "resource"
                | "subresource"
                | "authorization.k8s.io/decision"
        ),
        _ => false,
    }
}

/// The top-level members of an audit event, as the redaction marker names
/// them.
const AUDIT_FIELDS: &[(&str, &str)] = &[
    ("requestObject", "kubernetes.audit.requestObject"),
    ("responseObject", "kubernetes.audit.responseObject"),
    ("annotations", "kubernetes.audit.annotations"),
    ("requestURI", "kubernetes.audit.requestURI"),
    ("userAgent", "kubernetes.audit.userAgent"),
    ("objectRef", "kubernetes.audit.objectRef"),
    ("responseStatus", "kubernetes.audit.responseStatus"),
    ("user", "kubernetes.audit.user"),
    ("impersonatedUser", "kubernetes.audit.impersonatedUser"),
    ("sourceIPs", "kubernetes.audit.sourceIPs"),
];

fn audit_field(path: &[Seg<'_>]) -> Cow<'static, str> {
    match path.first() {
        Some(Seg::Key(k)) => audit_member(k),
        _ => Cow::Borrowed("kubernetes.audit"),
    }
}

/// The field name of a top-level member of an audit event.
fn audit_member(key: &str) -> Cow<'static, str> {
    match AUDIT_FIELDS.iter().find(|(name, _)| *name == key) {
        Some((_, field)) => Cow::Borrowed(field),
        None if key.is_empty() => Cow::Borrowed("kubernetes.audit"),
        None => Cow::Owned(format!("kubernetes.audit.{key}")),
    }
}

/// A GKE entry's path as the audit event's: `protoPayload.request…` is
/// `requestObject…`, `protoPayload.response…` `responseObject…`, the
/// principal `user.username`, the caller's address and agent `sourceIPs[]`
/// and `userAgent`; other paths stay.
fn gke_path<'p, 's>(path: &'p [Seg<'s>]) -> Cow<'p, [Seg<'s>]> {
    use Seg::{Index, Key};
    let [Key("protoPayload"), second, rest @ ..] = path else {
        return Cow::Borrowed(path);
    };
    let head: &[Seg<'static>] = match (second, rest) {
        (Key("request"), _) => &[Key("requestObject")],
        (Key("response"), _) => &[Key("responseObject")],
        (Key("authenticationInfo"), [Key("principalEmail")]) => {
            return Cow::Owned(vec![Key("user"), Key("username")])
        }
        (Key("requestMetadata"), [Key("callerIp")]) => {
            return Cow::Owned(vec![Key("sourceIPs"), Index])
        }
        (Key("requestMetadata"), [Key("callerSuppliedUserAgent")]) => {
            return Cow::Owned(vec![Key("userAgent")])
        }
        _ => return Cow::Borrowed(path),
    };
    let mut mapped = Vec::with_capacity(head.len() + rest.len());
    mapped.extend_from_slice(head);
    mapped.extend_from_slice(rest);
    Cow::Owned(mapped)
}

/// Where an AKS record carries the audit event.
const AKS_LOG: [Seg<'static>; 2] = [Seg::Key("properties"), Seg::Key("log")];

impl AuditVisitor<'_> {
    /// `path` from the audit event's root (inside an AKS record's
    /// `properties.log`); the record's own members keep theirs.
    fn event_path<'p, 's>(&self, path: &'p [Seg<'s>]) -> Cow<'p, [Seg<'s>]> {
        if self.gke {
            return gke_path(path);
        }
        if !self.wrapped || self.nested {
            return Cow::Borrowed(path);
        }
        Cow::Borrowed(path.strip_prefix(&AKS_LOG[..]).unwrap_or(path))
    }

    /// An AKS record's `properties.log` as an escaped string: the event is
    /// unescaped, rewritten on its own, and escaped again into `out`.
    fn nested_log(&mut self, raw: &str, out: &mut String) -> bool {
        let Some(inner) = unescape(raw) else {
            return false;
        };
        let mut rewritten = String::with_capacity(inner.len() + 256);
        self.nested = true;
        self.secret_name_at = None;
        self.member_at = (0, 0);
        let changed = json::rewrite(&inner, self, &mut rewritten);
        self.nested = false;
        self.secret_name_at = None;
        // `inner` goes: its keys' addresses may be reused.
        self.member_at = (0, 0);
        if !changed {
            return false;
        }
        if !push_escaped(out, &rewritten) {
            return false;
        }
        self.must_parse = true;
        true
    }

    /// `requestURI` (`raw`, as in the JSON text) whose query may hide
    /// something, decoded and rewritten right away (see [`rewrite_uri`]).
    fn request_uri(&mut self, raw: &str, out: &mut String) -> bool {
        let (mut text, mut decoded, mut argv) = (String::new(), String::new(), String::new());
        decode_uri(raw, &mut text, &mut decoded, &mut argv)
            && self.rewrite_uri(&text, &decoded, &argv, out)
    }

    /// A request URI (`text`, unescaped) decoded by [`decode_uri`] into
    /// `decoded` (its path and other parameters, as one text) and `argv`
    /// (its `command` values, a `kubectl exec`'s argv): both scrubbed, what
    /// changed encoded again and the URI written as JSON string content
    /// into `out`. Returns whether anything changed.
    #[inline(never)]
    fn rewrite_uri(&mut self, text: &str, decoded: &str, argv: &str, out: &mut String) -> bool {
        let Some((_, query)) = text.split_once('?') else {
            return false;
        };
        let field = audit_member("requestURI");
        let mut new_text = String::new();
        let new_text = self
            .scrub(decoded, field.clone(), &mut new_text)
            .then_some(new_text);
        let new_argv = if argv.is_empty() {
            None
        } else {
            self.scrub_argv(argv, field)
        };
        if new_text.is_none() && new_argv.is_none() {
            return false;
        }
        // The scrubbed pieces go back where they were, encoded; the new
        // arguments one for one into the `command` parameters. Where a
        // detector joined pieces, all go where the first one was.
        fn pieces(t: &str) -> std::str::Split<'_, char> {
            t.split('\0')
        }
        let same = |new: Option<&str>, old: &str| {
            new.is_none_or(|n| pieces(n).count() == pieces(old).count())
        };
        let (same_text, same_argv) = (
            same(new_text.as_deref(), decoded),
            same(new_argv.as_deref(), argv),
        );
        let mut text_pieces = pieces(new_text.as_deref().unwrap_or(decoded));
        let mut args = pieces(new_argv.as_deref().unwrap_or(argv));
        let mut rebuilt = String::with_capacity(text.len() + 32);
        rebuilt.push_str(text_pieces.next().unwrap_or(""));
        let mut sep = '?';
        let mut push = |rebuilt: &mut String, f: &dyn Fn(&mut String)| {
            rebuilt.push(sep);
            sep = '&';
            f(rebuilt);
        };
        for p in uri::params(query) {
            let (same, new, changed) = if p.key == "command" {
                (same_argv, &mut args, new_argv.is_some())
            } else {
                (same_text, &mut text_pieces, new_text.is_some())
            };
            if !changed {
                push(&mut rebuilt, &|r| r.push_str(p.raw));
            } else if same {
                let piece = new.next().unwrap_or("");
                if p.key == "command" {
                    push(&mut rebuilt, &|r| uri::push_param(r, p.raw_key, piece));
                } else {
                    push(&mut rebuilt, &|r| uri::push_pair(r, piece));
                }
            } else {
                for piece in new.by_ref() {
                    push(&mut rebuilt, &|r| uri::push_pair(r, piece));
                }
            }
        }
        push_escaped(out, &rebuilt)
    }

    /// A NUL-separated argv scrubbed as the kernel's is (mysql's
    /// `-pSECRET`, then known values and detectors); `None` when nothing
    /// changed.
    fn scrub_argv(&mut self, argv: &str, field: Cow<'static, str>) -> Option<String> {
        let mut text = Cow::Borrowed(argv);
        if argv::is_mysql(lumen_schemas::event::split_argv(argv).next().unwrap_or(""))
            && argv::has_p_arg(argv)
        {
            text = Cow::Owned(argv::mask_p_args(argv));
            self.marker
                .record(field.clone(), Detector::PasswordArg.rule());
        }
        let mut out = String::new();
        if self.scrub(&text, field, &mut out) {
            return Some(out);
        }
        match text {
            Cow::Owned(t) => Some(t),
            Cow::Borrowed(_) => None,
        }
    }

    /// An element of a `command`/`args` array of a request or response
    /// body (a container's, an ephemeral container's, an exec probe's),
    /// seen as the argv it is: the value after a secret flag, and mysql's
    /// `-pSECRET`, which no detector finds in one element alone. `None`:
    /// not such an element, or nothing to do here.
    #[inline(never)]
    fn argv_element(&mut self, path: &[Seg<'_>], raw: &str, out: &mut String) -> Option<bool> {
        let n = path.len();
        if self.argv.mysql_depth == Some(n + 1) {
            // A sibling of the arrays: the next object.
            self.argv.mysql_depth = None;
        }
        let (Some(Seg::Key(key @ ("command" | "args"))), Some(Seg::Index)) =
            (path.get(n.wrapping_sub(2)), path.last())
        else {
            return None;
        };
        let array = (key.as_ptr() as usize, key.len());
        if self.argv.array != array {
            self.argv = ArgvState {
                array,
                mysql_depth: self.argv.mysql_depth,
                ..ArgvState::default()
            };
        }
        let first = self.argv.seen == 0 && *key == "command";
        self.argv.seen += 1;
        if first {
            self.argv.mysql_depth = argv::is_mysql(raw).then_some(n);
        }
        let field = audit_field(path);
        if std::mem::take(&mut self.argv.value_next) && !raw.is_empty() {
            self.marker.record(field, Detector::PasswordArg.rule());
            out.push_str("[password_arg]");
            return Some(true);
        }
        if argv::takes_secret_next(raw) {
            self.argv.value_next = true;
            return None;
        }
        if !first && self.argv.mysql_depth == Some(n) && argv::is_p_arg(raw) {
            self.marker.record(field, Detector::PasswordArg.rule());
            out.push_str(argv::P_ARG_MASKED);
            return Some(true);
        }
        None
    }

    /// Free text (of `field`): known values replaced by their pseudonyms,
    /// then the detectors; the result goes to `out` if anything changed.
    fn scrub(&mut self, raw: &str, field: Cow<'static, str>, out: &mut String) -> bool {
        let mut text = Cow::Borrowed(raw);
        for (orig, pseudonym) in self.known_in_text {
            if detect::contains(&text, orig) {
                text = Cow::Owned(text.replace(orig, &self.pseudonyms[pseudonym.clone()]));
                self.marker.record(field.clone(), "known_value");
            }
        }
        self.tmp.clear();
        let before = self.fired.len();
        if self.screen && self.r.detect(&text, self.tmp, self.fired) {
            for d in &self.fired[before..] {
                self.marker.record(field.clone(), d.rule());
            }
            self.fired.truncate(before);
            out.push_str(self.tmp);
            return true;
        }
        match text {
            Cow::Owned(t) => {
                out.push_str(&t);
                true
            }
            Cow::Borrowed(_) => false,
        }
    }
}

impl Visit for AuditVisitor<'_> {
    #[inline]
    fn drop_member(&mut self, path: &[Seg<'_>]) -> bool {
        // Asked for every key: most events can lose nothing.
        self.may_drop && self.dropped(path)
    }

    fn string(&mut self, path: &[Seg<'_>], raw: &str, out: &mut String) -> bool {
        self.value(path, raw, out)
    }
}

impl AuditVisitor<'_> {
    /// Whether a built-in removal or a `drop` rule removes the member at
    /// `path`.
    #[inline(never)]
    fn dropped(&mut self, path: &[Seg<'_>]) -> bool {
        let mapped = self.event_path(path);
        let path = &*mapped;
        let k8s = &self.r.k8s;
        // Every built-in removal is in a request or response body.
        let in_body = matches!(
            path.first(),
            Some(Seg::Key("requestObject" | "responseObject"))
        );
        let hit = match self.k8s_drops {
            _ if !in_body => None,
            Some(K8sDrops::Secret) => (path.last() == Some(&Seg::Key(LAST_APPLIED))
                || k8s.secret_data.iter().any(|p| p.matches(path)))
            .then_some("k8s:secret_data"),
            Some(K8sDrops::ConfigMap) => k8s
                .configmap_data
                .iter()
                .any(|p| p.matches(path))
                .then_some("k8s:configmap_data"),
            Some(K8sDrops::TokenRequest) => k8s
                .sa_token
                .matches(path)
                .then_some("k8s:serviceaccount_token"),
            Some(K8sDrops::TokenReview) => k8s
                .token_review
                .matches(path)
                .then_some("k8s:serviceaccount_token"),
            None => None,
        };
        if let Some(rule) = hit {
            self.marker.record(audit_field(path), rule);
            return true;
        }
        for rule in &self.r.rules {
            if rule.action == Action::Drop && rule.audit.iter().any(|p| p.matches(path)) {
                self.marker.record(rule.field.clone(), rule.name.clone());
                return true;
            }
        }
        false
    }

    /// What [`Visit::string`] decides for this visitor.
    fn value(&mut self, path: &[Seg<'_>], raw: &str, out: &mut String) -> bool {
        if self.wrapped && !self.nested && path == AKS_LOG {
            return self.nested_log(raw, out);
        }
        // Positions in the original are the raw path's; rules see the
        // event's.
        let raw_path = path;
        let mapped = self.event_path(path);
        let path = &*mapped;
        let member = match path.first() {
            Some(Seg::Key(k)) => *k,
            _ => "",
        };
        // The same member as the last string's (compared by where its key
        // is): its rules are known.
        let here = (member.as_ptr() as usize, member.len());
        if self.member_at != here {
            self.member_at = here;
            self.member_rules = self.r.by_member.of(member);
        }
        for &(r, p) in self.member_rules {
            let rule = &self.r.rules[r];
            if rule.audit[p].matches(path) {
                if raw.is_empty() {
                    return false;
                }
                self.marker.record(rule.field.clone(), rule.name.clone());
                match self.known.iter().find(|(k, _)| *k == raw) {
                    Some((_, done)) => out.push_str(&self.pseudonyms[done.clone()]),
                    None => self.r.apply(rule, raw, out),
                }
                return true;
            }
        }
        // Array elements of bodies (and what follows a mysql `command`)
        // only: most strings are neither.
        if (self.argv.mysql_depth.is_some() || path.last() == Some(&Seg::Index))
            && matches!(
                path.first(),
                Some(Seg::Key("requestObject" | "responseObject"))
            )
        {
            if let Some(changed) = self.argv_element(path, raw, out) {
                return changed;
            }
        }
        if path == [Seg::Key("requestURI")]
            && raw
                .split_once('?')
                .is_some_and(|(_, q)| uri::needs_decoding(q))
        {
            if self.nested {
                // Not a string of the original: done right away.
                return self.request_uri(raw, out);
            }
            let at = |s: &str| s.as_ptr() as usize - self.base;
            let key = raw_path.first().map_or(0..0, |s| match s {
                Seg::Key(k) => at(k)..at(k) + k.len(),
                Seg::Index => 0..0,
            });
            let start = at(raw);
            self.uri_at = Some((start..start + raw.len(), key));
            return false;
        }
        match path.last() {
            Some(Seg::Key("name")) => {
                self.secret_name_at = detect::secretish_name(raw).then_some(path.len());
            }
            Some(Seg::Key("value")) if self.secret_name_at == Some(path.len()) => {
                self.secret_name_at = None;
                self.marker
                    .record(audit_field(path), Detector::SecretAssignment.rule());
                out.push_str("[secret_assignment]");
                return true;
            }
            _ => {}
        }
        if raw.len() < MIN_DETECTABLE || structural(path) {
            return false;
        }
        // A whole subtree past the depth limit, or the inside of an escaped
        // AKS log: not one string of the original, checked right away.
        let chunk = path.len() >= json::MAX_DEPTH && raw.starts_with(['{', '[']);
        if self.nested || chunk {
            return self.scrub(raw, audit_field(path), out);
        }
        // Its field is named only if something is found.
        let at = |s: &str| s.as_ptr() as usize - self.base;
        let member = match raw_path.first() {
            Some(Seg::Key(k)) => at(k)..at(k) + k.len(),
            _ => 0..0,
        };
        let start = at(raw);
        self.candidates.push((start..start + raw.len(), member));
        false
    }
}
