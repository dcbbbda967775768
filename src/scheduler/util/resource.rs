//! Resource arithmetic: what a pod requests and what a node offers.
//!
//! A pod's request follows the kubelet's admission rule: regular containers
//! run together, so their requests add up; ordinary init containers run one
//! at a time before them, so only the largest counts; sidecars (init
//! containers with `restartPolicy: Always`) keep running, so they add to
//! everything started after them. Pod-level `spec.resources.requests`, when
//! set, replace the container sum for CPU and memory, and `spec.overhead`
//! (the runtime's own cost) comes on top.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::scheduler::util::quantity::{parse_bytes, parse_cpu_millis};

pub const RESOURCE_CPU: &str = "cpu";
pub const RESOURCE_MEMORY: &str = "memory";
pub const RESOURCE_EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const RESOURCE_PODS: &str = "pods";

/// CPU a container without a CPU request is assumed to use when *scoring*
/// (never when filtering): otherwise best-effort pods would all pile onto
/// one node that looks empty.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory counterpart of [`DEFAULT_MILLI_CPU_REQUEST`]: 200 MiB.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of every resource the scheduler accounts for. CPU is in
/// millicores, memory and ephemeral storage in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Only meaningful for a node's allocatable (`status.allocatable.pods`).
    pub allowed_pod_number: i64,
    /// Extended resources (`example.com/gpu`), hugepages and other prefixed
    /// resources, by name.
    pub scalar_resources: BTreeMap<String, i64>,
}

/// Whether `name` is accounted as a scalar resource: an extended resource
/// (it has a domain prefix), a hugepages size, or an attachable-volume count.
/// Unprefixed names other than the well-known ones are not resources the
/// scheduler tracks.
pub fn is_scalar_resource_name(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

impl Resource {
    /// Reads a resource list (requests, allocatable, overhead). Quantities
    /// that do not parse count as zero: the API server validates them, so
    /// this only matters for hand-built objects.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resource {
        let mut r = Resource::default();
        for (name, quantity) in list {
            r.add_quantity(name, &quantity.0);
        }
        r
    }

    fn add_quantity(&mut self, name: &str, quantity: &str) {
        match name {
            RESOURCE_CPU => self.milli_cpu += parse_cpu_millis(quantity).unwrap_or(0),
            RESOURCE_MEMORY => self.memory += parse_bytes(quantity).unwrap_or(0),
            RESOURCE_EPHEMERAL_STORAGE => {
                self.ephemeral_storage += parse_bytes(quantity).unwrap_or(0)
            }
            RESOURCE_PODS => self.allowed_pod_number += parse_bytes(quantity).unwrap_or(0),
            _ if is_scalar_resource_name(name) => {
                *self.scalar_resources.entry(name.to_string()).or_default() +=
                    parse_bytes(quantity).unwrap_or(0);
            }
            _ => {}
        }
    }

    /// The amount of one resource by its Kubernetes name (0 if absent).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            RESOURCE_CPU => self.milli_cpu,
            RESOURCE_MEMORY => self.memory,
            RESOURCE_EPHEMERAL_STORAGE => self.ephemeral_storage,
            RESOURCE_PODS => self.allowed_pod_number,
            _ => self.scalar_resources.get(name).copied().unwrap_or(0),
        }
    }

    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (name, v) in &other.scalar_resources {
            *self.scalar_resources.entry(name.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (name, v) in &other.scalar_resources {
            *self.scalar_resources.entry(name.clone()).or_default() -= v;
        }
    }

    /// Raises every amount to at least `other`'s.
    pub fn set_max(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.max(other.allowed_pod_number);
        for (name, v) in &other.scalar_resources {
            let e = self.scalar_resources.entry(name.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// True when nothing at all is requested (pod count aside).
    pub fn is_empty_request(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar_resources.values().all(|v| *v == 0)
    }
}

/// One container's requests; with `non_zero` set, a missing CPU or memory
/// request reads as the scoring defaults. Only a *missing* request is
/// defaulted: an explicit `0` means the user asked for nothing.
fn container_requests(container: &Container, non_zero: bool) -> Resource {
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref());
    let mut r = requests.map(Resource::from_list).unwrap_or_default();
    if non_zero {
        let has = |name: &str| requests.is_some_and(|l| l.contains_key(name));
        if !has(RESOURCE_CPU) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has(RESOURCE_MEMORY) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// What `pod` needs from a node (see the module doc for the rule). With
/// `non_zero`, containers without CPU/memory requests count as 100m/200Mi;
/// that reading is for scoring only.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let mut requests = Resource::default();
    for c in &spec.containers {
        requests.add(&container_requests(c, non_zero));
    }

    let mut sidecars = Resource::default();
    let mut init_peak = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c, non_zero);
        let while_running = if is_sidecar(c) {
            // A sidecar stays up for the pod's whole life.
            requests.add(&own);
            sidecars.add(&own);
            sidecars.clone()
        } else {
            // An ordinary init container runs next to the sidecars started
            // before it.
            let mut r = own;
            r.add(&sidecars);
            r
        };
        init_peak.set_max(&while_running);
    }
    requests.set_max(&init_peak);

    if let Some(pod_level) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        // Pod-level requests cover CPU and memory only; they replace the sum.
        if let Some(q) = pod_level.get(RESOURCE_CPU) {
            requests.milli_cpu = parse_cpu_millis(&q.0).unwrap_or(0);
        }
        if let Some(q) = pod_level.get(RESOURCE_MEMORY) {
            requests.memory = parse_bytes(&q.0).unwrap_or(0);
        }
    }

    if let Some(overhead) = spec.overhead.as_ref() {
        requests.add(&Resource::from_list(overhead));
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::pod;

    #[test]
    fn containers_add_up() {
        let p = pod("p")
            .container(&[("cpu", "100m"), ("memory", "1Gi")])
            .container(&[("cpu", "1")])
            .build();
        let r = pod_requests(&p, false);
        assert_eq!(r.milli_cpu, 1100);
        assert_eq!(r.memory, 1 << 30);
    }

    #[test]
    fn largest_init_container_wins_per_resource() {
        let p = pod("p")
            .container(&[("cpu", "1m"), ("memory", "10")])
            .init_container(&[("cpu", "3m"), ("memory", "1")])
            .build();
        let r = pod_requests(&p, false);
        assert_eq!(r.milli_cpu, 3);
        assert_eq!(r.memory, 10);
    }

    #[test]
    fn sidecars_add_to_everything_after_them() {
        // sidecar 2m, then an init container of 5m (runs beside the sidecar:
        // 7m), then app 1m (runs beside the sidecar: 3m). Peak 7m.
        let p = pod("p")
            .container(&[("cpu", "1m")])
            .sidecar(&[("cpu", "2m")])
            .init_container(&[("cpu", "5m")])
            .build();
        assert_eq!(pod_requests(&p, false).milli_cpu, 7);
        let p = pod("p")
            .container(&[("cpu", "10m")])
            .sidecar(&[("cpu", "2m")])
            .init_container(&[("cpu", "5m")])
            .build();
        assert_eq!(pod_requests(&p, false).milli_cpu, 12);
    }

    #[test]
    fn overhead_is_added_and_pod_level_replaces() {
        let p = pod("p")
            .container(&[("cpu", "1m"), ("memory", "1")])
            .overhead(&[("cpu", "1m"), ("memory", "15")])
            .build();
        let r = pod_requests(&p, false);
        assert_eq!((r.milli_cpu, r.memory), (2, 16));
        let p = pod("p")
            .container(&[("cpu", "1m"), ("memory", "1")])
            .pod_level(&[("cpu", "500m")])
            .build();
        let r = pod_requests(&p, false);
        assert_eq!((r.milli_cpu, r.memory), (500, 1));
    }

    #[test]
    fn non_zero_defaults_only_for_missing_requests() {
        let p = pod("p").container(&[]).container(&[("cpu", "0")]).build();
        let r = pod_requests(&p, true);
        assert_eq!(r.milli_cpu, 100, "the explicit 0 stays 0");
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY_REQUEST);
        assert_eq!(pod_requests(&p, false), Resource::default());
    }

    #[test]
    fn scalar_resources() {
        let p = pod("p")
            .container(&[
                ("example.com/gpu", "2"),
                ("hugepages-2Mi", "4Mi"),
                ("bogus", "1"),
            ])
            .build();
        let r = pod_requests(&p, false);
        assert_eq!(r.get("example.com/gpu"), 2);
        assert_eq!(r.get("hugepages-2Mi"), 4 << 20);
        assert!(!r.scalar_resources.contains_key("bogus"));
        assert!(!r.is_empty_request());
    }
}
