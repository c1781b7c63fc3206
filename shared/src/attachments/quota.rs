//! Upload quotas: how many slots and how many declared bytes one user, and one tenant, may take
//! per UTC day. Charged when a slot is granted (the declared size: the upload cannot be
//! larger), by the store, atomically for both counters ([`crate::store::AttachmentIndex`]).

/// Milliseconds in a day.
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The day quotas are counted in: days since the epoch, UTC.
pub fn day_of(now_ms: u64) -> u64 {
    now_ms / DAY_MS
}

/// Per-day limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadQuota {
    /// Slots per user.
    pub user_count: u64,
    /// Declared bytes per user.
    pub user_bytes: u64,
    /// Slots per tenant.
    pub tenant_count: u64,
    /// Declared bytes per tenant.
    pub tenant_bytes: u64,
}

impl Default for UploadQuota {
    /// 200 files and 500 MB per user, 20,000 files and 20 GB per tenant, per day.
    fn default() -> Self {
        Self {
            user_count: 200,
            user_bytes: 500 * 1024 * 1024,
            tenant_count: 20_000,
            tenant_bytes: 20 * 1024 * 1024 * 1024,
        }
    }
}

/// What one user or tenant has used on a day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Slots granted.
    pub count: u64,
    /// Declared bytes.
    pub bytes: u64,
}

impl Usage {
    /// This usage with one more slot of `bytes`, if that stays within `count` and `max_bytes`.
    pub fn plus(self, bytes: u64, count: u64, max_bytes: u64) -> Option<Self> {
        let next = Self {
            count: self.count.saturating_add(1),
            bytes: self.bytes.saturating_add(bytes),
        };
        (next.count <= count && next.bytes <= max_bytes).then_some(next)
    }
}

/// Which quota refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    /// The user's.
    User,
    /// The tenant's.
    Tenant,
}

impl UploadQuota {
    /// The usages after one more slot of `bytes`, or which quota it would exceed: the rule every
    /// store applies inside its transaction.
    pub fn charge(
        &self,
        user: Usage,
        tenant: Usage,
        bytes: u64,
    ) -> Result<(Usage, Usage), QuotaExceeded> {
        let user = user
            .plus(bytes, self.user_count, self.user_bytes)
            .ok_or(QuotaExceeded::User)?;
        let tenant = tenant
            .plus(bytes, self.tenant_count, self.tenant_bytes)
            .ok_or(QuotaExceeded::Tenant)?;
        Ok((user, tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_counts_and_bytes_are_limited() {
        let quota = UploadQuota {
            user_count: 2,
            user_bytes: 10,
            tenant_count: 3,
            tenant_bytes: 100,
        };
        let none = Usage::default();
        let (user, tenant) = quota.charge(none, none, 4).expect("within");
        assert_eq!(user, Usage { count: 1, bytes: 4 });
        assert_eq!(quota.charge(user, tenant, 7), Err(QuotaExceeded::User));
        let (user, tenant) = quota.charge(user, tenant, 6).expect("exactly at the limit");
        assert_eq!(quota.charge(user, tenant, 0), Err(QuotaExceeded::User));
        let full_tenant = Usage { count: 3, bytes: 0 };
        assert_eq!(
            quota.charge(none, full_tenant, 1),
            Err(QuotaExceeded::Tenant)
        );
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
    }
}
