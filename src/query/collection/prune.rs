//! Segment pruning: a segment's min/max statistics from the manifest, as
//! DataFusion `PruningStatistics`, so a filter skips whole segments
//! before any file is read.

use crate::storage::format::manifest::SegmentMeta;
use crate::storage::format::segment::text_to_scalar;
use arrow::array::{ArrayRef, BooleanArray, UInt64Array};
use arrow::datatypes::Schema;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, ScalarValue};
use std::collections::HashSet;
use std::sync::Arc;

/// Segment statistics from the manifest, for [`PruningPredicate`].
pub(crate) struct SegmentStats<'a> {
    pub(crate) schema: &'a Schema,
    pub(crate) segments: &'a [&'a SegmentMeta],
}

impl SegmentStats<'_> {
    pub(crate) fn values(
        &self,
        column: &Column,
        pick: impl Fn(&crate::storage::format::manifest::ColumnStats) -> Option<&String>,
    ) -> Option<ArrayRef> {
        let dt = self
            .schema
            .field_with_name(&column.name)
            .ok()?
            .data_type()
            .clone();
        let values: Vec<ScalarValue> = self
            .segments
            .iter()
            .map(|s| {
                s.stats
                    .get(&column.name)
                    .and_then(&pick)
                    .and_then(|t| text_to_scalar(t, &dt))
                    .unwrap_or(ScalarValue::try_from(&dt).unwrap_or(ScalarValue::Null))
            })
            .collect();
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for SegmentStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.min.as_ref())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.max.as_ref())
    }

    fn num_containers(&self) -> usize {
        self.segments.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let counts: Vec<Option<u64>> = self
            .segments
            .iter()
            .map(|s| s.stats.get(&column.name).map(|c| c.null_count))
            .collect();
        Some(Arc::new(UInt64Array::from(counts)))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from_iter_values(
            self.segments.iter().map(|s| s.rows),
        )))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}
