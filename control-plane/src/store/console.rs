//! Queries of the provider console: the tenant table (search, filters, sorting, pages, with the
//! seats each tenant holds) and the totals per plan (tenants, seats, monthly recurring revenue).
//!
//! Callers outside the store reach these through [`Store::tenant_search`] and
//! [`Store::plan_totals`]: the types here are only ever built and read through them.

use std::collections::BTreeMap;

use sqlx::{FromRow, Row};

use super::codec::{JsonDoc, corrupt};
use super::engine::{TenantRow, count_u32, per_engine, tenant_columns};
use super::{Pool, Result, Store, Tenant};
use crate::domain::money::Money;
use crate::domain::plan::PlanSpec;
use crate::domain::subscription::SubscriptionState;

/// A column the tenant table sorts by. Each maps to a fixed `ORDER BY` written below: no text
/// of the request ever reaches the SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum TenantSort {
    #[default]
    Slug,
    Name,
    Plan,
    State,
    Seats,
    Created,
}

impl TenantSort {
    fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "slug" => Self::Slug,
            "name" => Self::Name,
            "plan" => Self::Plan,
            "state" => Self::State,
            "seats" => Self::Seats,
            "created" => Self::Created,
            _ => return None,
        })
    }
}

/// A query of the tenant table, built from [`Store::tenant_search`]; `run` answers it.
#[derive(Clone)]
pub struct TenantSearchBuilder<'a> {
    store: &'a Store,
    /// A `LIKE` pattern: lowercase, wildcards escaped, `%` around.
    pattern: Option<String>,
    plan: Option<String>,
    state: Option<SubscriptionState>,
    sort: TenantSort,
    descending: bool,
    page: u64,
    per_page: u32,
}

/// One page of the tenant table.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSearch {
    pub tenants: Vec<ConsoleTenant>,
    /// How many tenants match, on every page.
    pub total: u64,
    /// The page shown (1-based): the one asked for, brought within `1..=pages`.
    pub page: u64,
    /// At least 1, even when nothing matches.
    pub pages: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleTenant {
    pub tenant: Tenant,
    /// Seats held now, from the seat ledger.
    pub seats_held: u32,
    /// The maximum of the tenant's plan version.
    pub max_seats: u32,
}

/// Tenants, seats and revenue of a plan, or of every plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Tenants that are not deleted.
    pub tenants: u64,
    /// Seats held now, whatever the tenant's state.
    pub seats_held: u64,
    /// Seats held by trialing tenants: not billed yet.
    pub trialing_seats: u64,
    /// Monthly recurring revenue, one amount per currency (sorted by currency, none when no
    /// tenant pays): the seats held by `active` and `past_due` tenants, each at the price per
    /// seat of its own plan version.
    pub mrr: Vec<Money>,
}

impl Totals {
    fn add(&mut self, tenants: u64, seats_held: u64, state: Option<SubscriptionState>, price: &Money) -> Result<()> {
        self.tenants += tenants;
        self.seats_held += seats_held;
        match state {
            Some(SubscriptionState::Trialing) => self.trialing_seats += seats_held,
            Some(SubscriptionState::Active | SubscriptionState::PastDue) => {
                let seats = u32::try_from(seats_held).map_err(|_| corrupt(format!("seat total {seats_held}")))?;
                let revenue = price.times(seats).map_err(|e| corrupt(format!("revenue: {e}")))?;
                self.add_revenue(&revenue)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn add_revenue(&mut self, revenue: &Money) -> Result<()> {
        match self.mrr.iter_mut().find(|sum| sum.currency == revenue.currency) {
            Some(sum) => *sum = sum.plus(revenue).map_err(|e| corrupt(format!("revenue: {e}")))?,
            None => {
                self.mrr.push(*revenue);
                self.mrr.sort_by_key(|money| money.currency);
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: &Totals) -> Result<()> {
        self.tenants += other.tenants;
        self.seats_held += other.seats_held;
        self.trialing_seats += other.trialing_seats;
        other.mrr.iter().try_for_each(|revenue| self.add_revenue(revenue))
    }
}

/// Every plan's totals (plans without tenants included) and their sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanTotals {
    pub plans: BTreeMap<String, Totals>,
    pub all: Totals,
}

/// `%text%` for `LIKE … ESCAPE '\'`: lowercase (the columns are compared lowercased), and the
/// wildcards `%` and `_` (and the escape character itself) matched literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// A search of the provider console's tenant table: by default every live tenant, by slug,
    /// the first page of 25. Narrow it with the builder's methods, then `run` it.
    pub fn tenant_search(&self) -> TenantSearchBuilder<'_> {
        TenantSearchBuilder {
            store: self,
            pattern: None,
            plan: None,
            state: None,
            sort: TenantSort::Slug,
            descending: false,
            page: 1,
            per_page: 25,
        }
    }

    /// The keys [`TenantSearchBuilder::sort`] knows.
    pub const TENANT_SORT_KEYS: [&'static str; 6] = ["slug", "name", "plan", "state", "seats", "created"];

    /// Tenants, seats held, trialing seats and monthly recurring revenue per plan and in all,
    /// in one query.
    pub async fn plan_totals(&self) -> Result<PlanTotals> {
        match &self.pool {
            Pool::Postgres(pool) => pg::plan_totals(pool).await,
            Pool::Sqlite(pool) => sqlite::plan_totals(pool).await,
        }
    }
}

impl TenantSearchBuilder<'_> {
    /// Tenants whose slug, display name or owner email contain `text`, ignoring case; blank
    /// text matches everything.
    pub fn matching(mut self, text: &str) -> Self {
        let text = text.trim();
        self.pattern = (!text.is_empty()).then(|| like_pattern(text));
        self
    }

    /// Only tenants on this plan (any version).
    pub fn on_plan(mut self, plan: &str) -> Self {
        self.plan = Some(plan.to_string());
        self
    }

    /// Only tenants in this subscription state. Deleted tenants, hidden otherwise, are shown
    /// when asking for `canceled` (the state deletion leaves them in).
    pub fn in_state(mut self, state: SubscriptionState) -> Self {
        self.state = Some(state);
        self
    }

    /// Sorted by one of [`Store::TENANT_SORT_KEYS`] (an unknown key keeps the slug order), ties
    /// broken by slug.
    pub fn sort(mut self, key: &str, descending: bool) -> Self {
        self.sort = TenantSort::from_key(key).unwrap_or_default();
        self.descending = descending;
        self
    }

    /// Page `page` (1-based) of `per_page` tenants (at least 1). A page beyond the last gives
    /// the last; 0 gives the first.
    pub fn page(mut self, page: u64, per_page: u32) -> Self {
        self.page = page;
        self.per_page = per_page.max(1);
        self
    }

    /// One query for the count, one for the page.
    pub async fn run(&self) -> Result<TenantSearch> {
        match &self.store.pool {
            Pool::Postgres(pool) => pg::search(pool, self).await,
            Pool::Sqlite(pool) => sqlite::search(pool, self).await,
        }
    }

    fn include_deleted(&self) -> bool {
        self.state == Some(SubscriptionState::Canceled)
    }
}

/// The filter both the count and the page use: `$1` pattern, `$2` plan, `$3` state, `$4`
/// whether deleted tenants are included.
macro_rules! matching {
    () => {
        " FROM tenants t WHERE (t.deleted_at IS NULL OR $4) \
         AND ($1 IS NULL OR lower(t.slug) LIKE $1 ESCAPE '\\' OR lower(t.display_name) LIKE $1 ESCAPE '\\' \
              OR lower(t.owner_email) LIKE $1 ESCAPE '\\') \
         AND ($2 IS NULL OR t.plan = $2) AND ($3 IS NULL OR t.state = $3)"
    };
}

/// A page of tenants with their seats, in the order given: `$5` limit, `$6` offset. The seat
/// count is a correlated count on the held-seats index, so for orders other than by seats only
/// the rows of the page need it.
macro_rules! page_sql {
    ($($order:expr),+) => {
        concat!(
            "SELECT ",
            tenant_columns!(),
            ", (SELECT count(*) FROM seats s WHERE s.tenant = t.slug AND s.removed_at IS NULL) AS seats_held",
            ", (SELECT p.max_seats FROM plans p WHERE p.name = t.plan AND p.version = t.plan_version) AS max_seats",
            matching!(),
            " ORDER BY ",
            $($order,)+
            " LIMIT $5 OFFSET $6"
        )
    };
}

/// Subscription states in the order of a subscription's life, rather than alphabetically.
macro_rules! state_rank {
    () => {
        "CASE t.state WHEN 'trialing' THEN 0 WHEN 'active' THEN 1 WHEN 'past_due' THEN 2 \
         WHEN 'suspended' THEN 3 ELSE 4 END"
    };
}

/// The whole statement for a sort and direction: the only `ORDER BY`s there are.
fn page_statement(sort: TenantSort, descending: bool) -> &'static str {
    match (sort, descending) {
        (TenantSort::Slug, false) => page_sql!("t.slug ASC"),
        (TenantSort::Slug, true) => page_sql!("t.slug DESC"),
        (TenantSort::Name, false) => page_sql!("lower(t.display_name) ASC, t.slug ASC"),
        (TenantSort::Name, true) => page_sql!("lower(t.display_name) DESC, t.slug ASC"),
        (TenantSort::Plan, false) => page_sql!("t.plan ASC, t.slug ASC"),
        (TenantSort::Plan, true) => page_sql!("t.plan DESC, t.slug ASC"),
        (TenantSort::State, false) => page_sql!(state_rank!(), " ASC, t.slug ASC"),
        (TenantSort::State, true) => page_sql!(state_rank!(), " DESC, t.slug ASC"),
        (TenantSort::Seats, false) => page_sql!("seats_held ASC, t.slug ASC"),
        (TenantSort::Seats, true) => page_sql!("seats_held DESC, t.slug ASC"),
        (TenantSort::Created, false) => page_sql!("t.created_at ASC, t.slug ASC"),
        (TenantSort::Created, true) => page_sql!("t.created_at DESC, t.slug ASC"),
    }
}

fn count_u64(count: i64) -> Result<u64> {
    u64::try_from(count).map_err(|_| corrupt(format!("count {count}")).into())
}

per_engine! {
    pub(crate) async fn search(pool: &DbPool, query: &TenantSearchBuilder<'_>) -> Result<TenantSearch> {
        let state = query.state.map(|state| state.as_str());
        let mut conn = pool.acquire().await?;
        let total: i64 = sqlx::query_scalar(concat!("SELECT count(*)", matching!()))
            .bind(query.pattern.as_deref())
            .bind(query.plan.as_deref())
            .bind(state)
            .bind(query.include_deleted())
            .fetch_one(&mut *conn)
            .await?;
        let total = count_u64(total)?;
        let per_page = u64::from(query.per_page);
        let pages = total.div_ceil(per_page).max(1);
        let page = query.page.clamp(1, pages);
        let offset = i64::try_from((page - 1) * per_page).map_err(|_| corrupt("page offset"))?;
        let rows = sqlx::query(page_statement(query.sort, query.descending))
            .bind(query.pattern.as_deref())
            .bind(query.plan.as_deref())
            .bind(state)
            .bind(query.include_deleted())
            .bind(i64::from(query.per_page))
            .bind(offset)
            .fetch_all(&mut *conn)
            .await?;
        let tenants = rows
            .iter()
            .map(|row| {
                Ok(ConsoleTenant {
                    tenant: Tenant::try_from(TenantRow::from_row(row)?)?,
                    seats_held: count_u32(row.try_get("seats_held")?)?,
                    max_seats: count_u32(row.try_get("max_seats")?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TenantSearch { tenants, total, page, pages })
    }

    /// One row per plan version and subscription state (a version without tenants has one row
    /// with no state), with its price read from the version's spec.
    pub(crate) async fn plan_totals(pool: &DbPool) -> Result<PlanTotals> {
        let rows = sqlx::query(
            "SELECT p.name, p.spec, t.state, count(t.slug) AS tenants, \
             CAST(coalesce(sum(h.held), 0) AS BIGINT) AS seats_held \
             FROM plans p \
             LEFT JOIN tenants t ON t.plan = p.name AND t.plan_version = p.version AND t.deleted_at IS NULL \
             LEFT JOIN (SELECT tenant, count(*) AS held FROM seats WHERE removed_at IS NULL GROUP BY tenant) h \
               ON h.tenant = t.slug \
             GROUP BY p.name, p.version, t.state",
        )
        .fetch_all(pool)
        .await?;
        let mut totals = PlanTotals::default();
        for row in &rows {
            let name: String = row.try_get("name")?;
            let spec: JsonDoc = row.try_get("spec")?;
            let spec: PlanSpec =
                serde_json::from_value(spec.0).map_err(|e| corrupt(format!("plan {name:?} spec: {e}")))?;
            let state = row
                .try_get::<Option<String>, _>("state")?
                .map(|state| state.parse::<SubscriptionState>().map_err(corrupt))
                .transpose()?;
            let tenants = count_u64(row.try_get("tenants")?)?;
            let seats_held = count_u64(row.try_get("seats_held")?)?;
            totals.plans.entry(name).or_default().add(tenants, seats_held, state, &spec.price_per_seat_month)?;
        }
        let mut all = Totals::default();
        for plan in totals.plans.values() {
            all.merge(plan)?;
        }
        totals.all = all;
        Ok(totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(like_pattern("Acme"), "%acme%");
        assert_eq!(like_pattern("100%_off\\"), "%100\\%\\_off\\\\%");
    }

    #[test]
    fn every_sort_key_has_its_order() {
        for key in Store::TENANT_SORT_KEYS {
            let sort = TenantSort::from_key(key).unwrap();
            for descending in [false, true] {
                let sql = page_statement(sort, descending);
                assert!(sql.contains(if descending { " DESC" } else { " ASC" }), "{key}: {sql}");
                assert!(sql.trim_end().ends_with("LIMIT $5 OFFSET $6"), "{sql}");
            }
        }
        assert_eq!(TenantSort::from_key("slug; DROP TABLE tenants"), None);
    }

    #[test]
    fn revenue_is_summed_per_currency() {
        let eur = Money::new(1900, "EUR".parse().unwrap()).unwrap();
        let usd = Money::new(500, "USD".parse().unwrap()).unwrap();
        let mut totals = Totals::default();
        totals.add(2, 5, Some(SubscriptionState::Active), &eur).unwrap();
        totals.add(1, 3, Some(SubscriptionState::Trialing), &eur).unwrap();
        totals.add(1, 1, Some(SubscriptionState::Suspended), &eur).unwrap();
        totals.add(1, 2, Some(SubscriptionState::PastDue), &usd).unwrap();
        totals.add(0, 0, None, &usd).unwrap();
        assert_eq!((totals.tenants, totals.seats_held, totals.trialing_seats), (5, 11, 3));
        assert_eq!(totals.mrr, vec![eur.times(5).unwrap(), usd.times(2).unwrap()]);
    }
}
