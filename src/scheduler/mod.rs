//! dlite-scheduler: a filter -> score -> bind scheduler in the shape of
//! kube-scheduler's default profile.
