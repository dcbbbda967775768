//! SchedulingGates: a pod with entries in `spec.schedulingGates` is held
//! back from the active queue until something (a quota controller, a
//! workflow engine) removes them all. Nothing is filtered: gated pods are
//! simply not attempted.

use k8s_openapi::api::core::v1::Pod;

fn gates(pod: &Pod) -> &[k8s_openapi::api::core::v1::PodSchedulingGate] {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_deref())
        .unwrap_or(&[])
}

/// Whether the pod must wait before it may be queued.
pub fn is_gated(pod: &Pod) -> bool {
    !gates(pod).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::pod;

    #[test]
    fn gates() {
        assert!(!is_gated(&pod("p").build()));
        let p = pod("p")
            .gate("example.com/quota")
            .gate("example.com/b")
            .build();
        assert!(is_gated(&p));
        let mut empty = pod("p").build();
        empty.spec.as_mut().unwrap().scheduling_gates = Some(vec![]);
        assert!(!is_gated(&empty), "an empty list gates nothing");
    }
}
