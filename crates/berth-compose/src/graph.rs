//! `depends_on` graph: validation, cycle detection and start order.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::ComposeError;
use crate::model::Service;

/// Services in an order where every service comes after the services it depends on.
/// Ties are broken by name, so the order is deterministic. A missing dependency that is
/// `required: false` is ignored; a missing required one and any cycle are errors.
pub fn start_order(services: &BTreeMap<String, Service>) -> Result<Vec<String>, ComposeError> {
    let mut deps: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, svc) in services {
        let mut set = BTreeSet::new();
        for (dep, d) in &svc.depends_on {
            if services.contains_key(dep) {
                set.insert(dep.as_str());
            } else if d.required {
                return Err(ComposeError::Dependency(format!(
                    "service {name:?} depends on undefined service {dep:?}"
                )));
            }
        }
        deps.insert(name.as_str(), set);
    }
    let mut order = Vec::with_capacity(deps.len());
    let mut done: BTreeSet<&str> = BTreeSet::new();
    loop {
        let ready: Vec<&str> = deps
            .iter()
            .filter(|(n, d)| !done.contains(*n) && d.iter().all(|x| done.contains(x)))
            .map(|(n, _)| *n)
            .collect();
        if ready.is_empty() {
            break;
        }
        for n in ready {
            done.insert(n);
            order.push(n.to_string());
        }
    }
    if order.len() < deps.len() {
        return Err(ComposeError::Dependency(format!(
            "dependency cycle detected: {}",
            find_cycle(&deps, &done).join(" -> ")
        )));
    }
    Ok(order)
}

/// Walk from any unfinished node along unfinished edges until a node repeats.
fn find_cycle<'a>(
    deps: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    done: &BTreeSet<&'a str>,
) -> Vec<String> {
    let Some(mut cur) = deps.keys().find(|k| !done.contains(*k)).copied() else {
        return Vec::new();
    };
    let mut path: Vec<&str> = Vec::new();
    loop {
        if let Some(pos) = path.iter().position(|p| *p == cur) {
            let mut cyc: Vec<String> = path[pos..].iter().map(|s| s.to_string()).collect();
            cyc.push(cur.to_string());
            return cyc;
        }
        path.push(cur);
        // every unfinished node has at least one unfinished dependency
        match deps
            .get(cur)
            .and_then(|d| d.iter().find(|x| !done.contains(*x)))
        {
            Some(next) => cur = next,
            None => return path.iter().map(|s| s.to_string()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DependsOn;

    fn svc(deps: &[&str]) -> Service {
        let mut s = Service::default();
        for d in deps {
            s.depends_on.insert(
                d.to_string(),
                DependsOn {
                    condition: "service_started".into(),
                    restart: false,
                    required: true,
                },
            );
        }
        s
    }

    #[test]
    fn order() {
        let mut m = BTreeMap::new();
        m.insert("proxy".to_string(), svc(&["app"]));
        m.insert("app".to_string(), svc(&["db"]));
        m.insert("db".to_string(), svc(&[]));
        m.insert("cache".to_string(), svc(&[]));
        assert_eq!(start_order(&m).unwrap(), ["cache", "db", "app", "proxy"]);
    }

    #[test]
    fn cycle() {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), svc(&["b"]));
        m.insert("b".to_string(), svc(&["c"]));
        m.insert("c".to_string(), svc(&["a"]));
        m.insert("d".to_string(), svc(&[]));
        let e = start_order(&m).unwrap_err().to_string();
        assert_eq!(e, "dependency cycle detected: a -> b -> c -> a");
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), svc(&["a"]));
        assert!(start_order(&m).is_err());
    }

    #[test]
    fn undefined() {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), svc(&["nope"]));
        assert!(start_order(&m)
            .unwrap_err()
            .to_string()
            .contains("undefined service \"nope\""));
        if let Some(d) = m.get_mut("a").and_then(|s| s.depends_on.get_mut("nope")) {
            d.required = false;
        }
        assert_eq!(start_order(&m).unwrap(), ["a"]);
    }
}
