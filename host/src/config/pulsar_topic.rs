//! Pulsar topic names, checked as the broker parses them (`TopicName` in the Java client):
//! `persistent://tenant/namespace/topic` or `non-persistent://…`; the short forms `topic`
//! (in `public/default`) and `tenant/namespace/topic`; and the older
//! `persistent://tenant/cluster/namespace/topic`. A name that cannot work is refused before
//! anything is sent, with what is wrong with it.

/// Why `topic` is not a Pulsar topic name, or `Ok`.
pub fn check(topic: &str) -> Result<(), String> {
    let (domain, rest) = match topic.split_once("://") {
        Some((domain, rest)) => (domain, rest.to_string()),
        None if topic.is_empty() => return Err("a topic name must not be empty".into()),
        // Short forms: `topic` (in public/default) or `tenant/namespace/topic`.
        None => match topic.split('/').count() {
            1 => ("persistent", format!("public/default/{topic}")),
            3 => ("persistent", topic.to_string()),
            _ => {
                return Err(format!(
                    "{topic:?} is not a topic name: write persistent://tenant/namespace/topic, \
                     tenant/namespace/topic or a bare topic (in public/default)"
                ))
            }
        },
    };
    if domain != "persistent" && domain != "non-persistent" {
        return Err(format!(
            "{topic:?} is not a topic name: the domain must be persistent:// or \
             non-persistent://, not {domain:?}://"
        ));
    }
    let parts: Vec<&str> = rest.splitn(4, '/').collect();
    let (names, local) = match parts.as_slice() {
        [tenant, namespace, local] => {
            (vec![("tenant", *tenant), ("namespace", *namespace)], *local)
        }
        [tenant, cluster, namespace, local] => (
            vec![
                ("tenant", *tenant),
                ("cluster", *cluster),
                ("namespace", *namespace),
            ],
            *local,
        ),
        _ => {
            return Err(format!(
                "{topic:?} is not a topic name: it needs a tenant, a namespace and a topic \
                 (persistent://tenant/namespace/topic)"
            ))
        }
    };
    for (what, name) in names {
        if name.is_empty() {
            return Err(format!(
                "{topic:?} is not a topic name: the {what} is empty"
            ));
        }
        // The broker's rule for tenant, cluster and namespace names (`NamedEntity`).
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_-=:.".contains(*c)))
        {
            return Err(format!(
                "{topic:?} is not a topic name: the {what} {name:?} has {c:?}; \
                 only letters, digits and _ - = : . are allowed"
            ));
        }
    }
    if local.is_empty() {
        return Err(format!(
            "{topic:?} is not a topic name: the topic part is empty"
        ));
    }
    Ok(())
}

/// The `tenant/namespace` of a valid topic name (short forms resolved as the broker does).
pub fn namespace(topic: &str) -> Option<String> {
    check(topic).ok()?;
    let rest = match topic.split_once("://") {
        Some((_, rest)) => rest,
        None if !topic.contains('/') => return Some("public/default".into()),
        None => topic,
    };
    let parts: Vec<&str> = rest.splitn(4, '/').collect();
    match parts.as_slice() {
        [tenant, namespace, _] => Some(format!("{tenant}/{namespace}")),
        [tenant, cluster, namespace, _] => Some(format!("{tenant}/{cluster}/{namespace}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{check, namespace};

    #[test]
    fn namespaces_of_every_form() {
        for (t, ns) in [
            ("orders", "public/default"),
            ("acme/eu/orders", "acme/eu"),
            ("persistent://acme/eu/orders", "acme/eu"),
            ("non-persistent://acme/eu/orders", "acme/eu"),
            ("persistent://acme/c1/eu/orders", "acme/c1/eu"),
        ] {
            assert_eq!(namespace(t).as_deref(), Some(ns), "{t}");
        }
        assert_eq!(namespace("persistnt://acme/eu/orders"), None);
    }

    #[test]
    fn names_the_broker_accepts() {
        for t in [
            "orders",
            "public/default/orders",
            "persistent://public/default/orders",
            "non-persistent://my-tenant/ns.1/orders-eu",
            "persistent://tenant/cluster/ns/topic",
            "persistent://public/default/orders-partition-0",
            "persistent://public/default/a:b=c",
        ] {
            assert_eq!(check(t), Ok(()), "{t}");
        }
    }

    #[test]
    fn names_that_cannot_work_say_why() {
        for (t, why) in [
            ("persistnt://public/default/orders", "the domain must be"),
            ("", "must not be empty"),
            ("public/orders", "is not a topic name"),
            (
                "persistent://public/default",
                "needs a tenant, a namespace and a topic",
            ),
            (
                "persistent://orders",
                "needs a tenant, a namespace and a topic",
            ),
            ("persistent://public//orders", "the namespace is empty"),
            (
                "persistent://pub lic/default/orders",
                "the tenant \"pub lic\" has ' '",
            ),
            ("persistent://public/default/", "the topic part is empty"),
        ] {
            let e = check(t).expect_err(t);
            assert!(e.contains(why), "{t}: {e}");
        }
    }
}
