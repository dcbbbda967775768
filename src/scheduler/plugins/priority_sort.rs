//! PrioritySort: the active queue's order. Higher `spec.priority` first
//! (the admission plugin resolves priorityClassName into it; absent means
//! 0); among equals, the pod that entered the queue earlier, so no pod
//! waits forever behind later arrivals of its own priority.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;

pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// `Ordering::Less` when `a` should be popped before `b`. Enqueue times may
/// be any ordered type (a timestamp, a sequence number).
pub fn compare<T: Ord>(a: &Pod, a_enqueued: &T, b: &Pod, b_enqueued: &T) -> Ordering {
    pod_priority(b)
        .cmp(&pod_priority(a))
        .then_with(|| a_enqueued.cmp(b_enqueued))
}

/// Whether `a` goes strictly before `b`.
pub fn less<T: Ord>(a: &Pod, a_enqueued: &T, b: &Pod, b_enqueued: &T) -> bool {
    compare(a, a_enqueued, b, b_enqueued) == Ordering::Less
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::pod;

    #[test]
    fn higher_priority_first_then_earlier_enqueue() {
        let high = pod("high").priority(1000).build();
        let low = pod("low").build();
        let negative = pod("neg").priority(-5).build();
        assert!(less(&high, &2, &low, &1), "priority beats arrival");
        assert!(less(&low, &1, &negative, &0));
        let early = pod("a").priority(7).build();
        let late = pod("b").priority(7).build();
        assert!(less(&early, &1, &late, &2));
        assert!(!less(&late, &2, &early, &1));
        assert_eq!(compare(&early, &1, &late, &1), Ordering::Equal);

        let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let t1 = t0 + chrono::Duration::seconds(1);
        let mut queue = [
            (late.clone(), t1),
            (low.clone(), t0),
            (high.clone(), t1),
            (early.clone(), t0),
        ];
        queue.sort_by(|(a, ta), (b, tb)| compare(a, ta, b, tb));
        let order: Vec<&str> = queue
            .iter()
            .map(|(p, _)| p.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(order, ["high", "a", "b", "low"]);
    }
}
