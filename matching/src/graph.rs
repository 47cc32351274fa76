//! Customers are the connected components of the identity graph: records are nodes, accepted
//! links are edges.

use petgraph::unionfind::UnionFind;

/// Groups `node_count` nodes into connected components given undirected `edges` (pairs of node
/// indices). Components come out in the order of their smallest node, each sorted, so that the
/// result depends only on the graph, not on the order of the edges.
pub fn components(node_count: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut sets = UnionFind::<usize>::new(node_count);
    for &(a, b) in edges {
        if a < node_count && b < node_count {
            sets.union(a, b);
        }
    }
    let labels = sets.into_labeling();
    let mut by_root: Vec<Option<usize>> = vec![None; node_count];
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (node, root) in labels.into_iter().enumerate() {
        let slot = *by_root[root].get_or_insert_with(|| {
            out.push(Vec::new());
            out.len() - 1
        });
        out[slot].push(node);
    }
    out
}

/// Union-find that keeps each cluster's members, so that a merge can be refused when any
/// record of one cluster conflicts with any record of the other (plain union-find would chain
/// A~B and B~C into A~C even when A and C conflict).
#[derive(Debug, Clone)]
pub struct GuardedClusters {
    parent: Vec<u32>,
    members: Vec<Vec<u32>>,
}

/// At most this many members of each side are checked against each other on a merge.
const GUARD_CHECK_LIMIT: usize = 64;

impl GuardedClusters {
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            members: (0..n as u32).map(|i| vec![i]).collect(),
        }
    }

    pub fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] as usize != x {
            let grand = self.parent[self.parent[x] as usize];
            self.parent[x] = grand;
            x = grand as usize;
        }
        x
    }

    /// Merges the clusters of `a` and `b` unless `conflict(x, y)` holds for a member `x` of one
    /// and `y` of the other; `Err` carries the conflicting pair.
    pub fn union_unless(
        &mut self,
        a: usize,
        b: usize,
        conflict: impl Fn(usize, usize) -> bool,
    ) -> Result<(), (usize, usize)> {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return Ok(());
        }
        for &x in self.members[ra].iter().take(GUARD_CHECK_LIMIT) {
            for &y in self.members[rb].iter().take(GUARD_CHECK_LIMIT) {
                if conflict(x as usize, y as usize) {
                    return Err((x as usize, y as usize));
                }
            }
        }
        // The smaller root index stays root, so labels do not depend on merge order.
        let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[gone] = keep as u32;
        let moved = std::mem::take(&mut self.members[gone]);
        self.members[keep].extend(moved);
        Ok(())
    }

    /// Each element's cluster label: the smallest element index in its cluster.
    pub fn labels(&mut self) -> Vec<u32> {
        let n = self.parent.len();
        let mut smallest = vec![u32::MAX; n];
        for x in 0..n {
            let root = self.find(x);
            smallest[root] = smallest[root].min(x as u32);
        }
        (0..n).map(|x| smallest[self.find(x)]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_when_the_bridge_is_gone() {
        assert_eq!(
            components(4, &[(0, 1), (1, 2)]),
            vec![vec![0, 1, 2], vec![3]]
        );
        assert_eq!(
            components(4, &[(2, 3), (0, 1)]),
            vec![vec![0, 1], vec![2, 3]]
        );
        assert_eq!(components(3, &[]), vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn guarded_union_refuses_a_chain_through_a_conflict() {
        let mut clusters = GuardedClusters::new(3);
        let conflict = |x: usize, y: usize| (x, y) == (0, 2) || (x, y) == (2, 0);
        assert!(clusters.union_unless(0, 1, conflict).is_ok());
        assert_eq!(clusters.union_unless(1, 2, conflict), Err((0, 2)));
        assert_eq!(clusters.labels(), vec![0, 0, 2]);
    }
}
