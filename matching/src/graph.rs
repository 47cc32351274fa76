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
}
