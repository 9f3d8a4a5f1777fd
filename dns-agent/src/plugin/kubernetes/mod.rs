//! `kubernetes`: the cluster zone from the record model (see `README.md` beside this file).

mod setup;

pub use setup::{config, KubernetesConfig};

use hickory_proto::op::Message;

use super::{Answer, Ctx, Next, Plugin};
use crate::records::SharedRecords;
use crate::server::answer::{from_records, Request};

/// Answers the questions in the records' zones; the rest (and what falls through) goes on.
pub struct Kubernetes {
    records: SharedRecords,
}

impl Kubernetes {
    pub fn new(records: SharedRecords) -> Self {
        Kubernetes { records }
    }

    fn answer(&self, req: &Request) -> Option<Message> {
        // The read lock is released before any await.
        let records = self.records.load();
        from_records(req, &records)
    }
}

impl Plugin for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn serve<'a>(&'a self, ctx: &'a Ctx, req: Request, next: Next<'a>) -> Answer<'a> {
        match self.answer(&req) {
            Some(msg) => Box::pin(async move { Ok(msg) }),
            None => next.serve(ctx, req),
        }
    }
}
