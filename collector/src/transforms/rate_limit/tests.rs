//! The limiter against governor's fake clock: per-key buckets, refills,
//! never-drop kinds and predicates, summaries, bounded key cardinality.

use super::*;
use governor::clock::FakeRelativeClock;
use lumen_schemas::event::{
    push, Credentials, PrivilegeEvent, PrivilegeOp, Process, ProcessActivity, ProcessEvent,
};

fn config(key: Option<&str>, rate: u32, burst: u32) -> RateLimitConfig {
    let text = format!(
        "inputs = [\"k\"]\nrate = {rate}\nburst = {burst}\n{}",
        key.map(|k| format!("key = \"{k}\"\n")).unwrap_or_default()
    );
    let c: RateLimitConfig = toml::from_str(&text).unwrap();
    c.validate().unwrap();
    c
}

fn process_in(container: &str) -> Process {
    let mut p = Process::default().with_text("/bin/sh", "sh", &["sh", "-c", "x"]);
    p.attribution.container_id = push(&mut p.text, container);
    p.uid = 1000;
    p
}

fn exec(container: &str, t: i64) -> Event {
    Event {
        time: Timestamp(t),
        observed: Timestamp(t),
        host: Arc::default(),
        kind: EventKind::Process(Box::new(ProcessEvent {
            activity: ProcessActivity::Exec,
            process: process_in(container),
            exit: None,
            exe: Default::default(),
        })),
        redaction: Default::default(),
    }
}

fn setuid(container: &str) -> Event {
    Event {
        time: Timestamp(1),
        observed: Timestamp(1),
        host: Arc::default(),
        kind: EventKind::Privilege(Box::new(PrivilegeEvent {
            op: PrivilegeOp::Setuid,
            process: process_in(container),
            result: 0,
            old: Credentials::default(),
            new: Credentials::default(),
            requested: [0, u32::MAX, u32::MAX],
            target_pid: None,
            object_name: Default::default(),
            bpf_prog_type: None,
            mount: None,
            namespace: None,
        })),
        redaction: Default::default(),
    }
}

fn audit(resource: &str, code: u16) -> Event {
    let line = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/{resource}/x","verb":"get","user":{{"username":"mallory","groups":[]}},"sourceIPs":["10.0.0.9"],"objectRef":{{"resource":"{resource}","namespace":"prod","name":"x","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":{code}}},"stageTimestamp":"2026-11-29T10:00:00.000001Z"}}"#
    );
    let a = lumen_schemas::k8s_audit::parse_line(&line).unwrap();
    Event::api_activity(a, Arc::default(), Timestamp(1))
}

fn admitted(l: &mut Limiter<FakeRelativeClock>, events: impl IntoIterator<Item = Event>) -> usize {
    events.into_iter().filter(|e| l.admit(e)).count()
}

#[test]
fn each_key_has_its_own_bucket_refilled_at_the_rate() {
    let clock = FakeRelativeClock::default();
    let mut l = Limiter::new(
        "limit",
        &config(Some("{{ container.id }}"), 10, 10),
        clock.clone(),
    );
    assert_eq!(
        admitted(&mut l, (0..15).map(|t| exec("aaa", t))),
        10,
        "burst 10"
    );
    assert_eq!(
        admitted(&mut l, (0..3).map(|t| exec("bbb", t))),
        3,
        "another key is not affected"
    );
    clock.advance(Duration::from_millis(500));
    assert_eq!(
        admitted(&mut l, (0..15).map(|t| exec("aaa", t))),
        5,
        "10/s refills 5 in 500 ms"
    );
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        admitted(&mut l, (0..15).map(|t| exec("aaa", t))),
        10,
        "full again, not more"
    );
}

#[test]
fn without_a_key_the_transform_is_one_bucket() {
    let clock = FakeRelativeClock::default();
    let mut l = Limiter::new("limit", &config(None, 5, 5), clock);
    let events = (0..4)
        .map(|t| exec("aaa", t))
        .chain((0..4).map(|t| exec("bbb", t)));
    assert_eq!(admitted(&mut l, events), 5);
}

#[test]
fn never_drop_kinds_and_predicates_pass_a_flood() {
    let clock = FakeRelativeClock::default();
    let mut l = Limiter::new("limit", &config(None, 1, 1), clock);
    assert!(l.admit(&exec("aaa", 0)));
    assert!(!l.admit(&exec("aaa", 1)), "the bucket is empty");
    // Defaults: privilege changes and failed or forbidden calls on secrets.
    assert_eq!(admitted(&mut l, (0..100).map(|_| setuid("aaa"))), 100);
    assert_eq!(
        admitted(&mut l, (0..100).map(|_| audit("secrets", 403))),
        100
    );
    assert_eq!(
        admitted(&mut l, (0..100).map(|_| audit("secrets", 200))),
        0,
        "successful reads are limited"
    );
    assert_eq!(
        admitted(&mut l, (0..100).map(|_| audit("pods", 403))),
        0,
        "not on secrets"
    );
    // Lumen's own loss reports always pass.
    let summary = l.summaries();
    assert_eq!(admitted(&mut l, summary), 1);
    // So do a detect transform's findings (by default).
    let finding = |t| Event {
        kind: EventKind::Finding(Box::new(lumen_schemas::event::Finding {
            rule: Arc::default(),
            count: 1,
            first_seen: Timestamp(0),
            last_seen: Timestamp(0),
            evidence: Box::new(exec("aaa", t)),
        })),
        ..exec("aaa", t)
    };
    assert_eq!(admitted(&mut l, (0..50).map(finding)), 50);

    let mut c = config(None, 1, 1);
    c.never_drop = vec![
        NeverDrop::parse("k8s_audit_failed").unwrap(),
        NeverDrop::parse("process_exec").unwrap(),
    ];
    let mut l = Limiter::new("limit", &c, FakeRelativeClock::default());
    assert_eq!(admitted(&mut l, (0..10).map(|_| audit("pods", 403))), 10);
    assert_eq!(admitted(&mut l, (0..10).map(|t| exec("aaa", t))), 10);
    assert_eq!(
        admitted(&mut l, (0..10).map(|_| setuid("aaa"))),
        1,
        "no longer protected"
    );
}

#[test]
fn drops_are_summarized_per_key_and_interval_as_events() {
    let clock = FakeRelativeClock::default();
    let mut l = Limiter::new(
        "limit",
        &config(Some("{{ container.id }}"), 2, 2),
        clock.clone(),
    );
    admitted(&mut l, (100..110).map(|t| exec("aaa", t)));
    admitted(&mut l, (200..205).map(|t| exec("bbb", t)));
    admitted(&mut l, (0..2).map(|t| exec("ccc", t)));
    let summaries = l.summaries();
    assert_eq!(summaries.len(), 2, "only keys with drops");
    let report = |e: &Event| match &e.kind {
        EventKind::Loss(r) => r.clone(),
        other => panic!("not a summary: {other:?}"),
    };
    let a = report(&summaries[0]);
    assert_eq!(a.total(), 8);
    assert_eq!(a.by_kind, vec![(Cow::Borrowed("process_exec"), 8)]);
    assert_eq!(
        (a.since, a.until),
        (Timestamp(102), Timestamp(109)),
        "first and last dropped"
    );
    assert_eq!(
        a.cause,
        LossCause::RateLimit {
            transform: "limit".into(),
            key: "aaa".into()
        }
    );
    assert_eq!(summaries[0].kind.name(), "rate_limit_summary");
    assert!(a
        .message()
        .contains("8 events suppressed by rate limit `limit` for key `aaa`"));
    assert_eq!(report(&summaries[1]).total(), 3);
    // Encoded like every other event.
    for schema in [Schema::Ecs, Schema::Ocsf] {
        let mut out = Vec::new();
        schema.encode(&summaries[0], &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.to_string().contains("events suppressed"), "{v}");
    }
    assert!(l.summaries().is_empty(), "a new interval starts empty");
}

#[test]
fn key_cardinality_is_bounded_and_idle_keys_are_evicted() {
    let clock = FakeRelativeClock::default();
    let mut c = config(Some("{{ container.id }}"), 1, 1);
    c.max_keys = 2;
    c.idle_key_secs = 60;
    let mut l = Limiter::new("limit", &c, clock.clone());
    assert!(l.admit(&exec("k1", 0)));
    assert!(l.admit(&exec("k2", 0)));
    // k3 and k4 share the overflow bucket (burst 1).
    assert!(l.admit(&exec("k3", 0)));
    assert!(!l.admit(&exec("k4", 0)));
    assert_eq!(l.keys(), 2);
    let s = l.summaries();
    assert!(
        s.iter().any(|e| matches!(&e.kind, EventKind::Loss(r) if r.cause == LossCause::RateLimit { transform: "limit".into(), key: OVERFLOW_KEY.into() })),
        "overflow drops are summarized under the overflow key"
    );
    // k1 keeps being seen; k2 goes idle and is evicted: k5 gets its bucket.
    clock.advance(Duration::from_secs(40));
    assert!(l.admit(&exec("k1", 1)));
    clock.advance(Duration::from_secs(30));
    l.summaries();
    assert_eq!(l.keys(), 1, "k2 was idle for 70 s");
    assert!(l.admit(&exec("k5", 2)));
    assert!(!l.admit(&exec("k5", 3)), "k5 has its own bucket, burst 1");
    assert!(
        l.admit(&exec("k6", 2)),
        "the overflow bucket refilled meanwhile"
    );
}

#[test]
fn settings_are_checked() {
    let bad = |text: &str| -> String {
        match toml::from_str::<RateLimitConfig>(text) {
            Ok(c) => c.validate().unwrap_err(),
            Err(e) => e.to_string(),
        }
    };
    assert!(bad("inputs = []\nrate = 0\n").contains("rate"));
    assert!(bad("inputs = []\nrate = 1\nburst = 0\n").contains("burst"));
    assert!(bad("inputs = []\nrate = 1\nkey = \"{{ nope }}\"\n").contains("unknown field `nope`"));
    assert!(bad("inputs = []\nrate = 1\nnever_drop = [\"setuid\"]\n")
        .contains("unknown never_drop entry `setuid`"));
}
