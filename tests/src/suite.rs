//! Running cases as tests: a runtime per test, capability gating with visible "not applicable"
//! notes, exclusivity for cases that restart the server, and a bound on every case.

use std::io::Write;
use std::time::Duration;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::client::wait_timeout;
use crate::deployment::{Capability, Deployment};

/// Cases hold this shared; a case that restarts the server holds it exclusively, so no other
/// case in the process runs meanwhile (it would see its connections drop).
static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

/// Whether a case may run alongside others.
#[derive(Debug)]
pub enum Turn {
    /// Alongside other cases.
    Shared(RwLockReadGuard<'static, ()>),
    /// Alone.
    Exclusive(RwLockWriteGuard<'static, ()>),
}

/// The runtime a generated test runs its case on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime can be built")
}

/// Writes to the real stderr, past the test harness's output capture, so the note shows in
/// `cargo test` output even for a passing test.
fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// Checks `needs` against the deployment. `None` (after a visible note) when the case does not
/// apply; otherwise the turn to hold while the case runs.
pub async fn begin(case: &str, d: &dyn Deployment, needs: &[Capability]) -> Option<Turn> {
    if let Some(why) = d.unavailable() {
        note(&format!(
            "NOT APPLICABLE: protocol case `{case}` did not run: {why}"
        ));
        return None;
    }
    let caps = d.capabilities();
    let missing: Vec<&str> = needs
        .iter()
        .filter(|c| !c.in_(&caps))
        .map(|c| c.name())
        .collect();
    if !missing.is_empty() {
        note(&format!(
            "NOT APPLICABLE: protocol case `{case}` did not run: the deployment lacks {}",
            missing.join(", ")
        ));
        return None;
    }
    Some(if needs.contains(&Capability::Restart) {
        Turn::Exclusive(EXCLUSIVE.write().await)
    } else {
        Turn::Shared(EXCLUSIVE.read().await)
    })
}

/// The most one case may take, whatever it waits for.
pub fn case_limit() -> Duration {
    (wait_timeout() * 12).max(Duration::from_secs(60))
}

/// Runs a case under [`case_limit`] and panics with its error chain when it fails.
pub async fn finish(case: &str, run: impl Future<Output = anyhow::Result<()>>) {
    match tokio::time::timeout(case_limit(), run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("protocol case `{case}` failed: {e:#}"),
        Err(_) => panic!(
            "protocol case `{case}` did not finish within {:?}",
            case_limit()
        ),
    }
}

/// One test of a deployment's own: `$make` yields the deployment (as in [`protocol_suite!`]),
/// `[$cap…]` the capabilities it needs, and `$d` names it inside the case `$run`. The suite's
/// cases are expanded with it; a deployment adds its own cases the same way.
#[macro_export]
macro_rules! protocol_test {
    ($name:ident, $make:expr, [$($cap:ident),*], $d:ident => $run:expr) => {
        #[test]
        fn $name() {
            $crate::suite::runtime().block_on(async {
                let deployment = $make;
                let $d: &dyn $crate::Deployment = &*deployment;
                let Some(_turn) = $crate::suite::begin(
                    stringify!($name),
                    $d,
                    &[$($crate::Capability::$cap),*],
                )
                .await
                else {
                    return;
                };
                $crate::suite::finish(stringify!($name), $run).await;
            });
        }
    };
}

/// Expands to one `#[test]` per protocol case, each on its own multi-thread tokio runtime,
/// against the deployment `$make` yields. `$make` runs inside the test's async context (it may
/// `.await`) and must yield something that dereferences to a [`Deployment`]: `&'static T`,
/// `Arc<T>`, `Box<T>`. It is evaluated once per test; share one server between tests with a
/// `static OnceLock` if starting one is expensive (cases use their own tenants and run
/// concurrently).
///
/// Cases needing a capability the deployment lacks print `NOT APPLICABLE: …` to stderr (not
/// captured) and run nothing.
#[macro_export]
macro_rules! protocol_suite {
    ($make:expr $(,)?) => {
        $crate::__protocol_cases! { $make;
            bad_tokens_refused_401 [],
            token_granting_no_rooms_refused_403 [],
            subprotocol_token_accepted_and_echoed [],
            token_expiry_closes_4001 [],
            too_many_connections_refused_429 [],
            join_reports_head_members_and_presence [ManyRoomsPerConnection],
            leave_stops_delivery [],
            join_limit_exceeded [ManyRoomsPerConnection],
            message_acked_then_delivered_to_others_and_own_devices [],
            resend_same_id_returns_original_seq [],
            edit_and_delete_author_only [],
            reactions_are_counted_and_told_to_the_room [],
            replies_show_the_original_as_it_is_now [],
            typing_is_delivered_not_stored [],
            read_cursor_moves_forward_only [],
            ping_answered_with_pong [],
            rust_client_exchanges_messages_and_history [],
            presence_aggregates_devices_with_last_seen [],
            history_pages_before_after_limit [],
            rejected_frames_get_stable_error_codes [],
            oversized_frame_closed_1009 [],
            binary_frame_closed_1003 [],
            tenants_are_isolated [],
            concurrent_senders_gap_free_exactly_once [],
            resume_replays_exactly_the_missed_messages [],
            resume_replay_is_bounded_then_paged [],
            support_conversation_through_the_inbox [],
            desk_round_robin_under_capacity_then_the_freed_place [],
            desk_transfer_and_unassign_by_the_assigned_agent_only [],
            desk_identified_visitors_are_listed_and_found [],
            desk_rating_after_close_is_a_system_message [],
            desk_block_closes_the_visitors_socket_4003 [],
            desk_blocked_visitor_refused_until_unblocked [],
            desk_assigned_agent_moderates_the_conversation [],
            desk_embed_visitor_token_from_an_allowed_origin_only [HttpApi, Embed],
            acked_messages_survive_restart [Restart],
            http_health_ok [HttpApi],
            http_history_needs_a_granted_token [HttpApi],
            http_publish_needs_service_role [HttpApi],
            http_api_answers_cors [HttpApi],
            management_unknown_connection_gone_410 [ManagementApi],
            management_oversized_post_413 [ManagementApi],
            management_api_is_not_public [ManagementApi],
            jwt_attacks_refused_401 [],
            non_members_cannot_act_in_a_room [],
            nobody_changes_another_users_message [],
            tenants_are_isolated_on_every_path [],
            http_api_is_tenant_isolated [HttpApi],
            http_history_page_capped_at_128_kb [HttpApi],
            reserved_meta_keys_refused_invalid [],
            service_published_messages_carry_via_and_stay_unchanged [HttpApi],
            messages_carry_their_authors_role [HttpApi],
            repeated_presence_status_not_announced [],
            big_room_announces_occupancy_not_presence [],
            events_are_delivered_signed_with_every_change [HttpApi, Webhooks],
            endpoints_are_per_tenant_and_filtered [HttpApi, Webhooks],
            failed_deliveries_are_retried_until_accepted [HttpApi, Webhooks],
            refused_deliveries_are_dead_lettered_and_replayed [HttpApi, Webhooks],
            secret_rotation_signs_with_both_secrets [HttpApi, Webhooks],
            slow_endpoint_delays_nobody [HttpApi, Webhooks],
            events_survive_kill_between_ack_and_delivery [Restart, HttpApi, Webhooks],
            attachments_reach_members_byte_identical [HttpApi, Attachments],
            attachment_bad_inputs_are_refused [HttpApi, Attachments],
            deleted_message_takes_its_attachment [HttpApi, Attachments],
            upload_slots_are_held_to_a_quota [HttpApi, Attachments],
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __protocol_cases {
    ($make:expr; $($case:ident [$($cap:ident),*],)*) => {
        $(
            $crate::protocol_test!($case, $make, [$($cap),*], d => $crate::cases::$case(d));
        )*
    };
}

/// A chosen subset of [`protocol_suite!`]'s cases, for a deployment too slow to run them all in
/// CI (functions compiled and run under `cargo lambda watch`, say). Name the cases to run.
#[macro_export]
macro_rules! protocol_cases {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            $crate::protocol_test!($case, $make, [], d => $crate::cases::$case(d));
        )*
    };
}

/// The cases that need a deployment configured with a tight rate limit (the default 10 frames/s,
/// burst 30, or tighter; the same for each user's HTTP requests) and short timeouts: expands to `rate_limited_then_closed_4008`,
/// `replays_rate_limited_by_size`, `http_requests_rate_limited_per_user`,
/// `idle_connection_closed` and `max_age_connection_closed`, the latter two expecting close
/// 1001 after `idle` and `max_age` (`Duration`s the deployment was started with). Keep `idle`
/// above 1 s (the max-age case stays active with a ping every 400 ms) and `max_age` at least
/// twice `idle`, so the max-age case also shows that activity defers the idle timeout.
#[macro_export]
macro_rules! limits_suite {
    ($make:expr, idle: $idle:expr, max_age: $max_age:expr $(,)?) => {
        $crate::protocol_test!(rate_limited_then_closed_4008, $make, [], d =>
            $crate::cases::rate_limited_then_closed_4008(d));
        $crate::protocol_test!(replays_rate_limited_by_size, $make, [], d =>
            $crate::cases::replays_rate_limited_by_size(d));
        $crate::protocol_test!(http_requests_rate_limited_per_user, $make, [HttpApi], d =>
            $crate::cases::http_requests_rate_limited_per_user(d));
        $crate::protocol_test!(idle_connection_closed, $make, [], d =>
            $crate::cases::idle_connection_closed(d, $idle));
        $crate::protocol_test!(max_age_connection_closed, $make, [], d =>
            $crate::cases::max_age_connection_closed(d, $max_age));
    };
}
