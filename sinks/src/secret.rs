//! Secrets in configs: shown as `***` by `Debug`, so a logged config or an
//! error that quotes one never reveals a password or token.
//!
//! A secret is given as a string (usually `"${ENV_VAR}"`) or read from a
//! file: `password = { file = "/run/secrets/es_password" }` (Docker and
//! Kubernetes secrets are mounted as files; one trailing newline is
//! dropped).

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::path::PathBuf;

/// A secret string (password, API key, token).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, or { file = \"/path/to/secret\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
                let mut file: Option<PathBuf> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "file" => file = Some(map.next_value()?),
                        other => {
                            return Err(de::Error::unknown_field(other, &["file"]));
                        }
                    }
                }
                let file = file.ok_or_else(|| de::Error::missing_field("file"))?;
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    de::Error::custom(format!("cannot read secret file {}: {e}", file.display()))
                })?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                Ok(Secret(text.to_owned()))
            }
        }
        d.deserialize_any(SecretVisitor)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        password: Secret,
    }

    #[test]
    fn from_a_string_or_a_file() {
        let h: Holder = toml::from_str("password = \"p4ss\"").unwrap();
        assert_eq!(h.password.expose(), "p4ss");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file\n").unwrap();
        let h: Holder =
            toml::from_str(&format!("password = {{ file = \"{}\" }}", f.display())).unwrap();
        assert_eq!(h.password.expose(), "from-file");
        let e = toml::from_str::<Holder>("password = { file = \"/nonexistent/pw\" }")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot read secret file /nonexistent/pw"), "{e}");
        let e = toml::from_str::<Holder>("password = { path = \"x\" }")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("unknown field `path`"), "{e}");
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
