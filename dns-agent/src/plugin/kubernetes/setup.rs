//! The `kubernetes` directive: zones and options into [`Settings`] and the API source.

use std::path::PathBuf;

use crate::corefile::{CorefileError, Directive, Token};
use crate::records::settings::{normalize_zone, MAX_TTL};
use crate::records::{LabelSelector, PodMode, Settings};

/// What a `kubernetes` block configures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesConfig {
    pub settings: Settings,
    /// `kubeconfig PATH [CONTEXT]`.
    pub kubeconfig: Option<(PathBuf, Option<String>)>,
    /// `endpoint URL` (CoreDNS's name) or `apiserver URL`.
    pub apiserver: Option<String>,
}

fn error(tok: &Token, message: String) -> CorefileError {
    CorefileError {
        pos: tok.pos.clone(),
        message: format!("kubernetes: {message}"),
    }
}

/// Reads a `kubernetes [ZONES...] { ... }` directive of a block serving `block_zones`.
pub fn config(
    d: &Directive,
    block_zones: &[String],
    dir: &std::path::Path,
) -> Result<KubernetesConfig, CorefileError> {
    let mut settings = Settings {
        zones: Vec::new(),
        fallthrough: None,
        ..Settings::default()
    };
    for arg in &d.args {
        let zone = normalize_zone(&arg.text);
        if !settings.zones.contains(&zone) {
            settings.zones.push(zone);
        }
    }
    if settings.zones.is_empty() {
        settings.zones = block_zones.to_vec();
    }
    let mut out = KubernetesConfig {
        settings,
        kubeconfig: None,
        apiserver: None,
    };
    for opt in d.block_directives() {
        let name = opt.name.text.as_str();
        let args = &opt.args;
        let want = |n: std::ops::RangeInclusive<usize>, what: &str| -> Result<(), CorefileError> {
            if n.contains(&args.len()) {
                Ok(())
            } else {
                Err(error(&opt.name, format!("{name}: expected {what}")))
            }
        };
        if opt.block.is_some() {
            return Err(error(&opt.name, format!("{name} takes no block")));
        }
        let s = &mut out.settings;
        match name {
            "ttl" => {
                want(1..=1, "one TTL in seconds (0-3600)")?;
                let t = &args[0];
                s.ttl = t
                    .text
                    .parse::<u32>()
                    .ok()
                    .filter(|v| *v <= MAX_TTL)
                    .ok_or_else(|| {
                        error(
                            t,
                            format!("ttl {:?}: expected seconds from 0 to {MAX_TTL}", t.text),
                        )
                    })?;
            }
            "namespaces" => {
                want(1..=usize::MAX, "one or more namespaces")?;
                s.namespaces.extend(args.iter().map(|a| a.text.clone()));
            }
            "labels" | "namespace_labels" => {
                want(
                    1..=usize::MAX,
                    "a label selector such as `app=web,tier!=db`",
                )?;
                let text = args
                    .iter()
                    .map(|a| a.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                let sel: LabelSelector = text
                    .parse()
                    .map_err(|e| error(&args[0], format!("{name}: {e}")))?;
                if name == "labels" {
                    s.labels = Some(sel);
                } else {
                    s.namespace_labels = Some(sel);
                }
            }
            "pods" => {
                want(1..=1, "insecure, verified or disabled")?;
                s.pods = args[0]
                    .text
                    .parse::<PodMode>()
                    .map_err(|e| error(&args[0], e.to_string()))?;
            }
            "endpoint_pod_names" => {
                want(0..=0, "no argument")?;
                s.endpoint_pod_names = true;
            }
            "noendpoints" => {
                want(0..=0, "no argument")?;
                s.noendpoints = true;
            }
            "fallthrough" => {
                s.fallthrough = Some(args.iter().map(|a| normalize_zone(&a.text)).collect());
            }
            "ignore" => {
                want(1..=1, "`ignore empty_service`")?;
                if args[0].text != "empty_service" {
                    return Err(error(
                        &args[0],
                        format!(
                            "ignore {:?}: only `ignore empty_service` exists",
                            args[0].text
                        ),
                    ));
                }
                s.ignore_empty_service = true;
            }
            "kubeconfig" => {
                want(1..=2, "a kubeconfig path and optionally a context")?;
                let path = PathBuf::from(&args[0].text);
                let path = if path.is_relative() {
                    dir.join(path)
                } else {
                    path
                };
                out.kubeconfig = Some((path, args.get(1).map(|c| c.text.clone())));
            }
            "endpoint" | "apiserver" => {
                want(1..=1, "one API server URL")?;
                let url = &args[0].text;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(error(
                        &args[0],
                        format!("{name} {url:?}: expected an http:// or https:// URL"),
                    ));
                }
                out.apiserver = Some(url.clone());
            }
            "tls" | "resyncperiod" | "startup_timeout" | "multicluster" => {
                return Err(error(
                    &opt.name,
                    format!("{name} is not supported by this agent"),
                ));
            }
            other => {
                return Err(error(&opt.name, format!("unknown option {other:?}")));
            }
        }
    }
    out.settings
        .validate()
        .map_err(|e| error(&d.name, e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corefile;

    fn first(text: &str) -> Result<KubernetesConfig, CorefileError> {
        let cf = corefile::parse("Corefile", text).expect("parses");
        let block = &cf.blocks[0];
        let zones: Vec<String> = block.keys.iter().flat_map(|k| k.zones.clone()).collect();
        let d = block
            .directives_named("kubernetes")
            .next()
            .expect("kubernetes");
        config(d, &zones, std::path::Path::new("/etc/coredns"))
    }

    #[test]
    fn the_kubeadm_block() {
        let c = first(
            ".:53 {\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n}\n",
        )
        .expect("valid");
        let s = &c.settings;
        assert_eq!(s.zones, ["cluster.local.", "in-addr.arpa.", "ip6.arpa."]);
        assert_eq!(s.pods, PodMode::Insecure);
        assert_eq!(s.ttl, 30);
        assert_eq!(
            s.fallthrough,
            Some(vec!["in-addr.arpa.".to_owned(), "ip6.arpa.".to_owned()])
        );
        assert_eq!((c.kubeconfig, c.apiserver), (None, None));
    }

    #[test]
    fn every_option() {
        let c = first(
            "cluster.local:53 {\n kubernetes {\n  namespaces a b\n  labels app=web, tier in (x,y)\n  namespace_labels team\n  pods verified\n  endpoint_pod_names\n  noendpoints\n  fallthrough\n  ignore empty_service\n  kubeconfig kc ctx\n  endpoint https://10.0.0.1:6443\n }\n}\n",
        )
        .expect("valid");
        let s = &c.settings;
        assert_eq!(s.zones, ["cluster.local."], "the block's zones by default");
        assert_eq!(s.ttl, 5);
        assert_eq!(s.namespaces.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(s.labels.is_some() && s.namespace_labels.is_some());
        assert_eq!(s.pods, PodMode::Verified);
        assert!(s.endpoint_pod_names && s.noendpoints && s.ignore_empty_service);
        assert_eq!(s.fallthrough, Some(vec![]));
        assert_eq!(
            c.kubeconfig,
            Some((PathBuf::from("/etc/coredns/kc"), Some("ctx".to_owned())))
        );
        assert_eq!(c.apiserver.as_deref(), Some("https://10.0.0.1:6443"));
    }

    #[test]
    fn errors_name_the_token() {
        let cases = [
            (".:53 {\n kubernetes {\n  ttl 3601\n }\n}\n", "Corefile:3:7: kubernetes: ttl \"3601\": expected seconds from 0 to 3600"),
            (".:53 {\n kubernetes {\n  ttl\n }\n}\n", "Corefile:3:3: kubernetes: ttl: expected one TTL in seconds (0-3600)"),
            (".:53 {\n kubernetes {\n  pods maybe\n }\n}\n", "Corefile:3:8: kubernetes: pods mode \"maybe\" is unknown: give insecure, verified or disabled"),
            (".:53 {\n kubernetes {\n  ignore x\n }\n}\n", "Corefile:3:10: kubernetes: ignore \"x\": only `ignore empty_service` exists"),
            (".:53 {\n kubernetes {\n  bogus 1\n }\n}\n", "Corefile:3:3: kubernetes: unknown option \"bogus\""),
            (".:53 {\n kubernetes {\n  tls a b c\n }\n}\n", "Corefile:3:3: kubernetes: tls is not supported by this agent"),
            (".:53 {\n kubernetes {\n  endpoint 10.0.0.1\n }\n}\n", "Corefile:3:12: kubernetes: endpoint \"10.0.0.1\": expected an http:// or https:// URL"),
            (".:53 {\n kubernetes {\n  labels a in b\n }\n}\n", "Corefile:3:10: kubernetes: labels: label selector \"a in b\": in needs (v1,v2,...)"),
        ];
        for (text, want) in cases {
            let got = first(text).expect_err(text).to_string();
            assert_eq!(got, want, "{text}");
        }
    }
}
