//! The request modal, submitted: its fields read, checked and turned into
//! a new request, with the chosen runbook's inputs and start time. Problems
//! are shown next to the field they concern and the
//! modal stays open; a stored request closes it and the requester gets a DM.

use std::sync::Arc;

use super::{created_text, tell, Reply};
use crate::duration::parse_duration;
use crate::schedule::StartAt;
use crate::slack::blocks::{action, modal};
use crate::slack::inputs;
use crate::slack::payload::ViewSubmission;
use crate::workflow::{NewRequest, RequestError, Workflow};

#[tracing::instrument(skip_all, fields(user = %v.user.id))]
pub(super) async fn handle_submission(wf: &Arc<Workflow>, v: ViewSubmission) -> Reply {
    if v.view.callback_id != modal::CALLBACK_ID {
        return Reply::Ack;
    }
    let values = &v.view.state;
    let runbook = values
        .value(modal::RUNBOOK, action::RUNBOOK_SELECT)
        .unwrap_or_default();
    let duration_text = values
        .value(modal::DURATION, action::DURATION_INPUT)
        .unwrap_or_default();
    let reason = values
        .value(modal::REASON, action::REASON_INPUT)
        .unwrap_or_default();
    if runbook.is_empty() {
        return Reply::ViewErrors(vec![(
            modal::RUNBOOK,
            "Choose what you need access to.".into(),
        )]);
    }
    let duration = if duration_text.trim().is_empty() {
        None
    } else {
        match parse_duration(&duration_text) {
            Ok(d) => Some(d),
            Err(e) => return Reply::ViewErrors(vec![(modal::DURATION, e.to_string())]),
        }
    };
    // The chosen runbook's inputs and the start, if the modal showed them.
    let rb = wf.runbook(&runbook);
    let given = rb
        .map(|rb| inputs::read_modal(values, rb))
        .unwrap_or_default();
    let n = NewRequest {
        user: v.user.id.clone(),
        runbook,
        duration,
        reason,
        inputs: given,
        start: inputs::read_start(values).map(StartAt::Exact),
    };
    match wf.create_request(n).await {
        Ok(req) => {
            tell(wf, &req.id, None, &v.user.id, created_text(&req)).await;
            Reply::Ack
        }
        Err(RequestError::Inputs(problems)) => Reply::ViewErrors(
            problems
                .into_iter()
                .map(|p| {
                    // Next to its field; on the runbook menu when the
                    // modal did not show the field (yet).
                    let block = p
                        .index
                        .filter(|i| inputs::has_field(values, *i))
                        .map_or(modal::RUNBOOK, inputs::block_id);
                    (block, p.message)
                })
                .collect(),
        ),
        Err(e @ RequestError::Schedule(_)) if !values.values.contains_key(inputs::START) => {
            Reply::ViewErrors(vec![(modal::RUNBOOK, e.to_string())])
        }
        Err(e) => Reply::ViewErrors(vec![(e.field(), e.to_string())]),
    }
}
