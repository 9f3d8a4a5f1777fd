//! `prometheus`: CoreDNS's request and response metrics for every query through the block
//! (see `README.md` beside this file). The endpoint itself is the agent's metrics listener.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::{Answer, Ctx, Next, Plugin, Setup};
use crate::corefile::{CorefileError, Directive};
use crate::metrics::registry::{time_buckets, Counter, Histogram, Registry};
use crate::server::answer::{Request, Transport};

/// Query types counted by name; the rest are `other` (as CoreDNS does).
const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::HINFO,
    RecordType::MX,
    RecordType::NS,
    RecordType::PTR,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::ANY,
];

/// Series handles of one (zone, proto, family, type).
struct RequestSeries {
    requests: Arc<Counter>,
    duration: Arc<Histogram>,
}

/// Request series by (zone, transport, IPv6 client, counted query type).
type RequestMap = HashMap<(Arc<str>, Transport, bool, u16), Arc<RequestSeries>>;
/// Response counters by (zone, RCODE).
type ResponseMap = HashMap<(Arc<str>, u16), Arc<Counter>>;

/// Response codes with a slot of their own (the rest go through the maps).
const RCODE_SLOTS: usize = 24;

/// The series of one of the block's zones, found without a lock or a hash once created:
/// requests by (transport, family, type), responses by RCODE.
struct ZoneSlots {
    zone: String,
    requests: Box<[OnceLock<Arc<RequestSeries>>]>,
    responses: Box<[OnceLock<Arc<Counter>>]>,
}

/// What the request metrics are labelled by.
pub struct Question<'a> {
    /// The server block's zone that matched.
    pub zone: &'a Arc<str>,
    pub transport: Transport,
    pub ipv4_client: bool,
    pub qtype: RecordType,
}

pub struct Prometheus {
    server: String,
    registry: Arc<crate::metrics::Metrics>,
    slots: Vec<ZoneSlots>,
    requests: RwLock<RequestMap>,
    responses: RwLock<ResponseMap>,
}

/// `prometheus [ADDRESS]` (the address is the agent's, checked by `config::plan`).
pub fn setup(d: &Directive, s: &Setup<'_>) -> Result<Arc<dyn Plugin>, CorefileError> {
    if let Some(block) = &d.block {
        if let Some(first) = block.first() {
            return Err(CorefileError {
                pos: first.name.pos.clone(),
                message: "prometheus takes no block".to_owned(),
            });
        }
    }
    for zone in s.zones {
        s.metrics
            .registry
            .gauge(
                "coredns_plugin_enabled",
                "A metric that indicates whether a plugin is enabled on per server and zone basis.",
                &[
                    ("server", s.server),
                    ("zone", zone),
                    ("view", ""),
                    ("name", "prometheus"),
                ],
            )
            .set(1.0);
    }
    let slots = s
        .zones
        .iter()
        .map(|z| ZoneSlots {
            zone: z.clone(),
            requests: (0..2 * 2 * (TYPES.len() + 1))
                .map(|_| OnceLock::new())
                .collect(),
            responses: (0..RCODE_SLOTS).map(|_| OnceLock::new()).collect(),
        })
        .collect();
    Ok(Arc::new(Prometheus {
        server: s.server.to_owned(),
        registry: Arc::clone(s.metrics),
        slots,
        requests: RwLock::default(),
        responses: RwLock::default(),
    }))
}

fn type_label(t: RecordType) -> String {
    if TYPES.contains(&t) {
        t.to_string()
    } else {
        "other".to_owned()
    }
}

impl Prometheus {
    fn registry(&self) -> &Registry {
        &self.registry.registry
    }

    fn slots(&self, zone: &str) -> Option<&ZoneSlots> {
        self.slots.iter().find(|z| *z.zone == *zone)
    }

    /// Counts a request answered without the chain (a cache hit answered from its bytes)
    /// exactly as [`Plugin::serve`] counts one answered through it.
    pub fn count_answered(&self, q: &Question<'_>, rcode: u16, received: Instant) {
        let rcode = ResponseCode::from_low(rcode as u8);
        let code = usize::from(u16::from(rcode));
        match self.slots(q.zone) {
            // The usual case, without taking a reference to the series.
            Some(slots) if code < RCODE_SLOTS => {
                let series = self.request_slot(slots, q);
                series.requests.inc();
                slots.responses[code]
                    .get_or_init(|| self.response_counter_slow(q.zone, rcode))
                    .inc();
                series.duration.observe(received.elapsed().as_secs_f64());
            }
            _ => {
                let series = self.request_series(q);
                series.requests.inc();
                self.response_counter(q.zone, rcode).inc();
                series.duration.observe(received.elapsed().as_secs_f64());
            }
        }
    }

    fn request_series(&self, q: &Question<'_>) -> Arc<RequestSeries> {
        match self.slots(q.zone) {
            Some(slots) => Arc::clone(self.request_slot(slots, q)),
            None => self.request_series_slow(q),
        }
    }

    fn request_slot<'s>(&self, slots: &'s ZoneSlots, q: &Question<'_>) -> &'s Arc<RequestSeries> {
        let t = TYPES
            .iter()
            .position(|t| *t == q.qtype)
            .unwrap_or(TYPES.len());
        let i = (usize::from(q.transport == Transport::Tcp) * 2 + usize::from(!q.ipv4_client))
            * (TYPES.len() + 1)
            + t;
        slots.requests[i].get_or_init(|| self.request_series_slow(q))
    }

    fn request_series_slow(&self, q: &Question<'_>) -> Arc<RequestSeries> {
        let qtype = q.qtype;
        let counted = if TYPES.contains(&qtype) {
            u16::from(qtype)
        } else {
            0
        };
        let key = (Arc::clone(q.zone), q.transport, !q.ipv4_client, counted);
        if let Some(s) = self
            .requests
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(s);
        }
        let proto = match q.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        let family = if q.ipv4_client { "1" } else { "2" };
        let t = type_label(qtype);
        let labels = [
            ("server", self.server.as_str()),
            ("zone", &**q.zone),
            ("view", ""),
            ("proto", proto),
            ("family", family),
            ("type", t.as_str()),
        ];
        let series = Arc::new(RequestSeries {
            requests: self.registry().counter(
                "coredns_dns_requests_total",
                "Counter of DNS requests made per zone, protocol and family.",
                &labels,
            ),
            duration: self.registry().histogram(
                "coredns_dns_request_duration_seconds",
                "Histogram of the time (in seconds) each request took per zone.",
                &[
                    ("server", self.server.as_str()),
                    ("zone", &**q.zone),
                    ("view", ""),
                    ("type", t.as_str()),
                ],
                &time_buckets(),
            ),
        });
        self.requests
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&series));
        series
    }

    fn response_counter(&self, zone: &Arc<str>, rcode: ResponseCode) -> Arc<Counter> {
        let code = usize::from(u16::from(rcode));
        match self.slots(zone) {
            Some(slots) if code < RCODE_SLOTS => Arc::clone(
                slots.responses[code].get_or_init(|| self.response_counter_slow(zone, rcode)),
            ),
            _ => self.response_counter_slow(zone, rcode),
        }
    }

    fn response_counter_slow(&self, zone: &Arc<str>, rcode: ResponseCode) -> Arc<Counter> {
        let key = (Arc::clone(zone), u16::from(rcode));
        if let Some(c) = self
            .responses
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(c);
        }
        let r = super::rcode_name(u16::from(rcode));
        let c = self.registry().counter(
            "coredns_dns_responses_total",
            "Counter of response status codes.",
            &[
                ("server", self.server.as_str()),
                ("zone", &**zone),
                ("view", ""),
                ("rcode", r.as_str()),
                ("plugin", ""),
            ],
        );
        self.responses
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&c));
        c
    }
}

impl Plugin for Prometheus {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn serve<'a>(&'a self, ctx: &'a Ctx, req: Request, next: Next<'a>) -> Answer<'a> {
        let series = self.request_series(&Question {
            zone: &ctx.zone,
            transport: req.transport,
            ipv4_client: ctx.client.is_ipv4(),
            qtype: req.question.query_type(),
        });
        series.requests.inc();
        Box::pin(async move {
            let result = next.serve(ctx, req).await;
            let rcode = match &result {
                Ok(m) => m.response_code(),
                Err(_) => ResponseCode::ServFail,
            };
            self.response_counter(&ctx.zone, rcode).inc();
            series
                .duration
                .observe(ctx.received.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use hickory_proto::op::{Header, Message, Query};
    use hickory_proto::rr::Name;

    use super::*;
    use crate::metrics::Metrics;

    struct Fixed(ResponseCode);

    impl Plugin for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
            let m: Message = req.reply(self.0);
            Box::pin(async move { Ok(m) })
        }
    }

    #[tokio::test]
    async fn counts_requests_responses_and_durations_with_coredns_labels() {
        let metrics = Arc::new(Metrics::default());
        let zones = vec![".".to_owned()];
        let setup = Setup {
            zones: &zones,
            dir: std::path::Path::new("."),
            metrics: &metrics,
            server: "dns://:53",
        };
        let cf =
            crate::corefile::parse("Corefile", ".:53 {\n prometheus :9153\n}\n").expect("parses");
        let p = super::setup(&cf.blocks[0].directives[0], &setup).expect("setup");
        let chain: Vec<Arc<dyn Plugin>> = vec![p, Arc::new(Fixed(ResponseCode::NXDomain))];
        let ctx = Ctx {
            client: SocketAddr::from(([10, 0, 0, 1], 5353)),
            local: SocketAddr::from(([127, 0, 0, 1], 53)),
            zone: Arc::from("."),
            received: Instant::now(),
        };
        let req = Request {
            header: Header::new(),
            question: Query::query(
                Name::from_ascii("x.example.").expect("name"),
                RecordType::AAAA,
            ),
            edns: None,
            transport: Transport::Udp,
        };
        for _ in 0..3 {
            let m = Next::chain(&chain)
                .serve(&ctx, req.clone())
                .await
                .expect("answer");
            assert_eq!(m.response_code(), ResponseCode::NXDomain);
        }
        let ctx6 = Ctx {
            client: "[fd00::1]:5353".parse().expect("addr"),
            ..ctx.clone()
        };
        Next::chain(&chain)
            .serve(&ctx6, req.clone())
            .await
            .expect("answer");
        let text = metrics.render(None);
        for want in [
            "coredns_dns_requests_total{server=\"dns://:53\",zone=\".\",view=\"\",proto=\"udp\",family=\"2\",type=\"AAAA\"} 1",
            "coredns_dns_requests_total{server=\"dns://:53\",zone=\".\",view=\"\",proto=\"udp\",family=\"1\",type=\"AAAA\"} 3",
            "coredns_dns_responses_total{server=\"dns://:53\",zone=\".\",view=\"\",rcode=\"NXDOMAIN\",plugin=\"\"} 4",
            "coredns_dns_request_duration_seconds_count{server=\"dns://:53\",zone=\".\",view=\"\",type=\"AAAA\"} 4",
            "coredns_plugin_enabled{server=\"dns://:53\",zone=\".\",view=\"\",name=\"prometheus\"} 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
