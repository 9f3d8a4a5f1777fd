//! Checks on single typed objects that the API server would have enforced (hand-written snapshots).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Label that links an EndpointSlice to its Service.
pub use crate::cluster::SERVICE_NAME_LABEL;

/// RFC 1123 label as Kubernetes checks namespace names: 1-63 of `[a-z0-9-]`, alphanumeric at
/// both ends.
pub fn check_dns1123_label(what: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {value:?} is not a DNS label (1-63 lower-case letters, digits or '-', starting and ending with a letter or digit)"
        ))
    }
}

/// RFC 1035 label as Kubernetes checks Service names: an RFC 1123 label starting with a letter.
pub fn check_dns1035_label(what: &str, value: &str) -> Result<(), String> {
    check_dns1123_label(what, value)?;
    if value.starts_with(|c: char| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(format!("{what} {value:?} must start with a letter"))
    }
}

fn check_cluster_ip(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value == "None" || value.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!(
            "{field} {value:?} is not an IP address, \"None\" or empty"
        ))
    }
}

pub fn check_service(svc: &Service) -> Result<(), String> {
    let Some(spec) = &svc.spec else { return Ok(()) };
    if let Some(ip) = &spec.cluster_ip {
        check_cluster_ip("spec.clusterIP", ip)?;
    }
    if let Some(ips) = &spec.cluster_ips {
        for (i, ip) in ips.iter().enumerate() {
            check_cluster_ip(&format!("spec.clusterIPs[{i}]"), ip)?;
        }
        if let (Some(first), Some(ip)) = (ips.first(), &spec.cluster_ip) {
            if !ip.is_empty() && first != ip {
                return Err(format!(
                    "spec.clusterIPs[0] {first:?} differs from spec.clusterIP {ip:?}"
                ));
            }
        }
    }
    Ok(())
}

pub fn check_endpoint_slice(slice: &EndpointSlice) -> Result<(), String> {
    let parses: fn(&str) -> bool = match slice.address_type.as_str() {
        "IPv4" => |a| a.parse::<Ipv4Addr>().is_ok(),
        "IPv6" => |a| a.parse::<Ipv6Addr>().is_ok(),
        "FQDN" => |_| true,
        "" => return Err("addressType is missing".to_owned()),
        other => {
            return Err(format!(
                "addressType {other:?} is not one of \"IPv4\", \"IPv6\", \"FQDN\""
            ));
        }
    };
    for (i, ep) in slice.endpoints.iter().enumerate() {
        for (j, addr) in ep.addresses.iter().enumerate() {
            if !parses(addr) {
                return Err(format!(
                    "endpoints[{i}].addresses[{j}] {addr:?} is not an {} address",
                    slice.address_type
                ));
            }
        }
    }
    Ok(())
}
