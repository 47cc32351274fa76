//! The sample area shipped inside the binary (Washington, DC; see `services/data/census/README.md`
//! for sources and licenses), so that enrichment works with no files to install. Config points
//! c360 at other files (a state's address points, the national block groups) instead.

pub const BLOCKGROUPS_GEOJSON: &[u8] = include_bytes!("../../data/census/blockgroups.geojson");
pub const ACS_CSV: &[u8] = include_bytes!("../../data/census/acs_blockgroups.csv");
pub const ADDRESS_POINTS_CSV: &[u8] = include_bytes!("../../data/census/address_points.csv");
pub const ZIP_CENTROIDS_CSV: &[u8] = include_bytes!("../../data/census/zip_centroids.csv");
