//! Azure AKS diagnostic records: the audit event in `properties.log` (a JSON
//! string, or an object), the record's own fields kept as the event's
//! [`Wrapper`], the cluster and subscription read from `resourceId`.

use super::{from_raw, AksProperties, AuditParseError, BStr, RawEvent, Text};
use crate::event::{ApiActivity, Str, Wrapper};
use std::borrow::Cow;

pub(super) fn parse(
    line: &str,
    props: AksProperties<'_>,
    category: Option<BStr<'_>>,
    operation_name: Option<BStr<'_>>,
    resource_id: Option<BStr<'_>>,
    time: Option<BStr<'_>>,
) -> Result<ApiActivity, AuditParseError> {
    let log = props.log.ok_or_else(|| {
        AuditParseError::NotAnEvent("AKS record without properties.log".to_owned())
    })?;
    let inner: Cow<'_, str> = match log.get().as_bytes().first() {
        Some(b'"') => Cow::Owned(serde_json::from_str::<String>(log.get())?),
        Some(b'{') => Cow::Borrowed(log.get()),
        _ => {
            return Err(AuditParseError::NotAnEvent(
                "AKS properties.log is neither a string nor an object".to_owned(),
            ))
        }
    };
    let raw: RawEvent<'_> = serde_json::from_str(&inner)?;
    let mut text = match &inner {
        // An object inside the line: the line already holds it.
        Cow::Borrowed(_) => Text {
            text: line.to_owned(),
            base: line,
            base_offset: 0,
        },
        Cow::Owned(unescaped) => {
            let mut buf = String::with_capacity(line.len() + unescaped.len());
            buf.push_str(line);
            buf.push_str(unescaped);
            Text {
                text: buf,
                base: unescaped,
                base_offset: line.len(),
            }
        }
    };
    let resource_id = text.str(resource_id);
    let (cluster, account) = cluster_and_subscription(&text.text, resource_id);
    let wrapper = Wrapper {
        provider: "aks".into(),
        category: text.str(category),
        operation_name: text.str(operation_name),
        resource_id,
        pod: text.str(props.pod),
        container_id: text.str(props.container_id),
        time: text.str(time),
        cluster,
        account,
        ..Wrapper::default()
    };
    let mut activity = from_raw(raw, text, line.len())?;
    activity.wrapper = Some(wrapper);
    Ok(activity)
}

/// The cluster name and subscription id inside an AKS `resourceId`
/// (`/SUBSCRIPTIONS/<id>/RESOURCEGROUPS/<group>/PROVIDERS/
/// MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/<name>`, in any case), as
/// ranges of `text`.
fn cluster_and_subscription(text: &str, resource_id: Str) -> (Str, Str) {
    let id = resource_id.get(text);
    let start = resource_id.bounds().0;
    let after = |key: &str| -> Str {
        let mut at = 0;
        let mut parts = id.split('/');
        while let Some(part) = parts.next() {
            at += part.len() + 1;
            if part.eq_ignore_ascii_case(key) {
                if let Some(value) = parts.next().filter(|v| !v.is_empty()) {
                    return Str::range(start + at, start + at + value.len());
                }
            }
        }
        Str::EMPTY
    };
    (after("managedClusters"), after("subscriptions"))
}

#[cfg(test)]
mod tests {
    use crate::k8s_audit::parse_line;

    #[test]
    fn aks_records_carry_the_inner_event_and_their_metadata() {
        let inner = r#"{"kind":"Event","auditID":"x","stage":"ResponseComplete","verb":"update","user":{"username":"aksService"}}"#;
        for log in [serde_json::to_string(inner).unwrap(), inner.to_owned()] {
            let line = format!(
                r#"{{"category":"kube-audit","resourceId":"/SUBSCRIPTIONS/0000-11/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-AKS","properties":{{"log":{log},"pod":"apiserver-1"}}}}"#
            );
            let a = parse_line(&line).unwrap();
            assert_eq!(a.original(), line);
            assert_eq!(a.s(a.user.username), "aksService");
            assert_eq!(a.s(a.verb), "update");
            let w = a.wrapper.as_ref().unwrap();
            assert_eq!((a.s(w.category), a.s(w.pod)), ("kube-audit", "apiserver-1"));
            assert_eq!((a.s(w.cluster), a.s(w.account)), ("PROD-AKS", "0000-11"));
            assert_eq!(w.cloud_provider(), "azure");
        }
    }
}
