//! PrioritySort: the active queue's order. Higher `spec.priority` first
//! (the admission plugin resolves priorityClassName into it; absent means
//! 0); among equals, the pod that entered the queue earlier, so no pod
//! waits forever behind later arrivals of its own priority.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;

pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// `Ordering::Less` when a pod of priority `a_priority` enqueued at
/// `a_enqueued` should be popped before one of `b_priority` enqueued at
/// `b_enqueued`. Enqueue times may be any ordered type (a timestamp, a
/// sequence number). The active queue's heap orders by this.
pub fn compare<T: Ord>(
    a_priority: i32,
    a_enqueued: &T,
    b_priority: i32,
    b_enqueued: &T,
) -> Ordering {
    b_priority
        .cmp(&a_priority)
        .then_with(|| a_enqueued.cmp(b_enqueued))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::pod;

    #[test]
    fn higher_priority_first_then_earlier_enqueue() {
        let before = |a: i32, ta: u64, b: i32, tb: u64| compare(a, &ta, b, &tb) == Ordering::Less;
        assert!(before(1000, 2, 0, 1), "priority beats arrival");
        assert!(before(0, 1, -5, 0), "absent priority (0) beats negative");
        assert!(before(7, 1, 7, 2), "equal priority: earlier first");
        assert!(!before(7, 2, 7, 1));
        assert_eq!(compare(7, &1, 7, &1), Ordering::Equal);

        let mut queue = [("b", 7, 1), ("low", 0, 0), ("high", 1000, 1), ("a", 7, 0)];
        queue.sort_by(|(_, pa, ta), (_, pb, tb)| compare(*pa, ta, *pb, tb));
        let order: Vec<&str> = queue.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(order, ["high", "a", "b", "low"]);
    }

    #[test]
    fn priority_is_spec_priority_or_zero() {
        assert_eq!(pod_priority(&pod("p").priority(-3).build()), -3);
        assert_eq!(pod_priority(&pod("p").build()), 0);
    }
}
