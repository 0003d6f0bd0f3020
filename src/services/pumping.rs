//! The rules against SMS pumping (international revenue share fraud): who may receive a code,
//! and two breakers that watch where codes go. Background and arithmetic: docs/sms-pumping.md.
//!
//! - [`check_destination`]: the destination country (`SMS_ALLOWED_REGIONS`) and the kind of
//!   line (`SMS_ALLOWED_NUMBER_TYPES`), decided from the number alone, before any budget is
//!   read or spent.
//! - The range breaker: at most `SMS_RANGE_PER_HOUR` codes an hour to the never-signed-in
//!   numbers of one range (the E.164 number without its last `SMS_RANGE_DIGITS` digits).
//!   Pumping walks an operator's range; real sign-ups rarely crowd into one.
//! - The conversion breaker: once `SMS_COUNTRY_MIN_SENDS` codes went to a country within the
//!   hour, fewer than `SMS_COUNTRY_MIN_CONVERSION` of them verified means most go to numbers
//!   nobody reads; new numbers of that country are refused until the share recovers.
//!
//! Both hold back only numbers that never completed a sign-in: a user who signed in before
//! always gets a code (the other limits still apply). Their counters are `rate_events`
//! buckets like every other limit's, read under the same lock and in the same statement as
//! the send windows, so they hold across instances. A caller refused by a breaker is charged
//! its per-client send budget as if a code had gone out: probing whether a number has an
//! account (a known user gets a code where a new number is refused) then costs exactly what
//! requesting codes costs (see the docs for what is left of that signal).

use std::{
    collections::BTreeSet,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait,
    sea_query::{Asterisk, Expr, ExprTrait, Query, QueryStatementBuilder, SimpleExpr},
};

use crate::{
    config::Config,
    db::entities::users,
    domain::phone::Phone,
    error::{AppError, AppResult, reason},
    services::{
        limits::{self, Bucket, Probe, Window},
        seconds_until,
    },
};

const HOUR: Duration = Duration::from_secs(3600);

/// Refuses, with BAD_USER_INPUT on `phone`, a number no code may be sent to: outside
/// `SMS_ALLOWED_REGIONS`, or of a type outside `SMS_ALLOWED_NUMBER_TYPES`. Reads nothing.
pub fn check_destination(config: &Config, phone: &Phone) -> AppResult<()> {
    if !config.sms_allowed_regions.is_empty()
        && !phone
            .region()
            .is_some_and(|r| config.sms_allowed_regions.contains(r))
    {
        crate::metrics::limit_refused("region");
        return Err(AppError::bad_input(
            "phone",
            "Codes cannot be sent to this country.",
        ));
    }
    if !config
        .sms_guard
        .allowed_number_types
        .contains(&phone.number_type())
    {
        crate::metrics::limit_refused("number_type");
        tracing::info!(phone = %phone, number_type = %phone.number_type(), "number type refused");
        return Err(AppError::bad_input_because(
            "phone",
            reason::UNSUPPORTED_NUMBER_TYPE,
            "Codes cannot be sent to this kind of number; use a mobile number.",
        ));
    }
    Ok(())
}

/// The breakers' counters for one phone.
pub struct Breakers {
    /// Codes to never-signed-in numbers of the phone's range (`sms_range` refuses).
    pub range: Window,
    /// Codes to the phone's country (counted, never refusing by itself).
    pub country_sent: Window,
    /// Sign-ins completed by numbers of the phone's country.
    pub country_verified: Window,
    country: String,
}

impl Breakers {
    pub fn new(config: &Config, phone: &Phone) -> Self {
        let guard = &config.sms_guard;
        let country = phone.country_key();
        let conversion_on = guard.country_min_sends > 0;
        Self {
            range: Window::new(
                Bucket::RangeCodes(phone.range(guard.range_digits)),
                guard.range_per_hour,
                HOUR,
                "sms_range",
            ),
            country_sent: Window::counter(Bucket::CountryCodes(&country), HOUR, conversion_on),
            country_verified: Window::counter(
                Bucket::CountryVerified(&country),
                HOUR,
                conversion_on,
            ),
            country,
        }
    }

    /// Whether any breaker is on (otherwise nothing of this module costs a statement).
    pub fn any_on(&self) -> bool {
        self.range.max > 0 || self.country_sent.max > 0
    }

    /// The windows to count, in the order [`Breakers::verdict`] reads their counts.
    pub fn windows(&self) -> [Window; 3] {
        [
            self.range.clone(),
            self.country_sent.clone(),
            self.country_verified.clone(),
        ]
    }

    /// What a code sent to this phone records: always its country's send, and its range's
    /// when the number never signed in (known users are not counted against their range).
    pub fn sent_windows(&self, known_user: bool) -> Vec<Window> {
        let mut windows = vec![self.country_sent.clone()];
        if !known_user {
            windows.push(self.range.clone());
        }
        windows
    }

    /// "Has this phone completed a sign-in?", read in the counting statement: the `users` row
    /// is created by the first successful verifyCode.
    pub fn known_user_probe(phone: &Phone) -> Probe {
        // (SELECT COUNT(*) FROM users WHERE phone = ?)
        let count = Query::select()
            .expr(Expr::col(Asterisk).count())
            .from(users::Entity)
            .and_where(users::Column::Phone.eq(phone.as_str()))
            .to_owned();
        Probe(SimpleExpr::SubQuery(
            None,
            Box::new(count.into_sub_query_statement()),
        ))
    }

    /// Judges a number that never signed in, with the counts of [`Breakers::windows`]:
    /// RATE_LIMITED when its range is full or its country's conversion is too low.
    pub async fn verdict(
        &self,
        conn: &impl ConnectionTrait,
        config: &Config,
        counts: &[i64],
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let [range, sent, verified] = counts else {
            return Err(AppError::internal(anyhow::anyhow!(
                "the breakers need three counts"
            )));
        };
        if let Err(err) =
            limits::verdict(conn, std::slice::from_ref(&self.range), &[*range], now).await
        {
            tracing::info!(
                range_codes = range,
                "range breaker: code refused to a new number"
            );
            return Err(err);
        }
        let guard = &config.sms_guard;
        if self.country_sent.max == 0 {
            return Ok(());
        }
        let too_low = *sent >= i64::from(guard.country_min_sends)
            && (*verified as f64) < guard.country_min_conversion * (*sent as f64);
        if !too_low {
            note_closed(&self.country, *sent, *verified);
            return Ok(());
        }
        note_open(&self.country, *sent, *verified);
        crate::metrics::limit_refused("sms_country_conversion");
        // Nothing changes before the oldest code of the hour leaves it (or a sign-in comes).
        let at = limits::oldest_leaves_at(conn, &self.country_sent, now).await?;
        Err(AppError::RateLimited {
            retry_after: seconds_until(now, at),
        })
    }
}

/// The countries whose breaker this process last saw open: the log and the gauge follow the
/// changes, not every request.
static OPEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn note_open(country: &str, sent: i64, verified: i64) {
    let newly = OPEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(country.to_owned());
    if newly {
        crate::metrics::country_breaker(country, true);
        tracing::warn!(
            country,
            sent,
            verified,
            "SMS conversion breaker open: codes to new numbers of this country are refused \
             until more of the last hour's codes are verified"
        );
    }
}

fn note_closed(country: &str, sent: i64, verified: i64) {
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    if open.is_empty() || !open.remove(country) {
        return;
    }
    drop(open);
    crate::metrics::country_breaker(country, false);
    tracing::info!(country, sent, verified, "SMS conversion breaker closed");
}

/// Counts a completed sign-in for the phone's country (the conversion breaker's numerator).
/// One statement, or none when the breaker is off.
pub async fn record_verified(
    conn: &impl ConnectionTrait,
    config: &Config,
    phone: &Phone,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let breakers = Breakers::new(config, phone);
    limits::record(conn, std::slice::from_ref(&breakers.country_verified), now).await
}
