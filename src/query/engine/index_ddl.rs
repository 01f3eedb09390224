//! `CREATE INDEX` and `DROP INDEX`: parsed from sqlparser's statements
//! into quiver's own ([`Statement::CreateIndex`], [`Statement::DropIndex`])
//! and run against the store. Index names are unique in the store (as
//! PostgreSQL's are in a schema), so `DROP INDEX name` needs no table.

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, ObjectName, ObjectType, Statement as SqlStatement, Value,
};

use crate::error::{Error, Result};
use crate::query::engine::{Engine, Statement};
use crate::storage::format::manifest::Change;
use crate::storage::index::def::{parse_request, IndexRequest};

/// Quiver's statement for a `CREATE INDEX` / `DROP INDEX`, if `stmt` is one.
pub(crate) fn index_statement(stmt: &DFStatement) -> Result<Option<Statement>> {
    let DFStatement::Statement(s) = stmt else {
        return Ok(None);
    };
    match s.as_ref() {
        SqlStatement::CreateIndex(ci) => {
            let collection = last_part(&ci.table_name)?;
            let Some(name) = &ci.name else {
                return Err(Error::invalid(format!(
                    "CREATE INDEX on '{collection}' needs a name: CREATE INDEX <name> ON {collection} USING ivf (<vector column>)"
                )));
            };
            let name = last_part(name)?;
            let [column] = &ci.columns[..] else {
                return Err(Error::invalid(format!(
                    "index '{name}': a vector index covers exactly one vector column, not {}",
                    ci.columns.len()
                )));
            };
            let col = match &column.column.expr {
                SqlExpr::Identifier(id) => id.value.clone(),
                other => {
                    return Err(Error::invalid(format!(
                        "index '{name}': '{other}' is not a column name"
                    )))
                }
            };
            if ci.unique || ci.predicate.is_some() || !ci.include.is_empty() {
                return Err(Error::invalid(format!(
                    "index '{name}': UNIQUE, INCLUDE and WHERE are not supported for vector indexes"
                )));
            }
            let using = ci.using.as_ref().map(|u| u.to_string());
            let opclass = column.operator_class.as_ref().map(|o| o.to_string());
            let mut options = Vec::new();
            for e in &ci.with {
                let SqlExpr::BinaryOp { left, op, right } = e else {
                    return Err(Error::invalid(format!(
                        "index '{name}': WITH takes key = value pairs, not '{e}'"
                    )));
                };
                if op.to_string() != "=" {
                    return Err(Error::invalid(format!(
                        "index '{name}': WITH takes key = value pairs, not '{e}'"
                    )));
                }
                let key = match left.as_ref() {
                    SqlExpr::Identifier(id) => id.value.clone(),
                    other => other.to_string(),
                };
                let value = match right.as_ref() {
                    SqlExpr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                        Value::Number(n, _) => n.to_string(),
                        Value::Boolean(b) => b.to_string(),
                        other => other.to_string(),
                    },
                    SqlExpr::Identifier(id) => id.value.clone(),
                    other => other.to_string(),
                };
                options.push((key, value));
            }
            let request = parse_request(
                &name,
                &col,
                using.as_deref(),
                opclass.as_deref(),
                &options,
                ci.if_not_exists,
            )?;
            Ok(Some(Statement::CreateIndex {
                collection,
                request,
            }))
        }
        SqlStatement::Drop {
            object_type: ObjectType::Index,
            if_exists,
            names,
            ..
        } => {
            let [name] = &names[..] else {
                return Err(Error::invalid("DROP INDEX drops one index at a time"));
            };
            let (collection, name) = match &name.0[..] {
                [n] => (None, n.to_string()),
                [c, n] => (Some(c.to_string()), n.to_string()),
                _ => return Err(Error::invalid(format!("'{name}' is not an index name"))),
            };
            Ok(Some(Statement::DropIndex {
                collection: collection.map(|c| c.trim_matches('"').to_string()),
                name: name.trim_matches('"').to_string(),
                if_exists: *if_exists,
            }))
        }
        _ => Ok(None),
    }
}

fn last_part(n: &ObjectName) -> Result<String> {
    n.0.last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .ok_or_else(|| Error::invalid(format!("'{n}' is not a name")))
}

impl Engine {
    /// Declares an index (committed in the manifest); its files are built
    /// in the background, or before returning with `WITH (wait = true)`.
    pub(crate) async fn create_index(
        &self,
        collection: &str,
        request: IndexRequest,
    ) -> Result<u64> {
        let store = self.store();
        let m = store.require(collection)?;
        let schema = m
            .schema
            .as_ref()
            .ok_or_else(|| Error::CollectionNotFound(collection.to_string()))?;
        let def = &request.def;
        let Some(field) = schema.fields().iter().find(|f| f.name() == &def.column) else {
            return Err(Error::invalid(format!(
                "index '{}': collection '{collection}' has no column '{}'",
                def.name, def.column
            )));
        };
        match field.data_type() {
            arrow::datatypes::DataType::FixedSizeList(item, _)
                if item.data_type() == &arrow::datatypes::DataType::Float32 => {}
            other => {
                return Err(Error::invalid(format!(
                    "index '{}': column '{}' of '{collection}' is {other}, not a FLOAT[d] vector column",
                    def.name, def.column
                )))
            }
        }
        let taken = store.collection_names().into_iter().find(|c| {
            store
                .snapshot(c)
                .is_some_and(|m| m.indexes.iter().any(|i| i.name == def.name))
        });
        if taken.is_some() {
            if request.if_not_exists {
                return Ok(0);
            }
            return Err(Error::IndexExists(def.name.clone()));
        }
        store
            .commit(collection, &Change::CreateIndex(def.clone()), None)
            .await?;
        store.wake_index_builder();
        if request.wait {
            store
                .build_indexes(collection, Some(&def.name), &|_, _| {})
                .await?;
        }
        Ok(0)
    }

    /// Drops an index and forgets its files (GC removes them).
    pub(crate) async fn drop_index(
        &self,
        collection: Option<&str>,
        name: &str,
        if_exists: bool,
    ) -> Result<u64> {
        let store = self.store();
        let names = match collection {
            Some(c) => vec![c.to_string()],
            None => store.collection_names(),
        };
        let on = names.into_iter().find(|c| {
            store
                .snapshot(c)
                .is_some_and(|m| m.indexes.iter().any(|i| i.name == name))
        });
        match on {
            Some(c) => {
                store
                    .commit(&c, &Change::DropIndex(name.to_string()), None)
                    .await?;
                Ok(0)
            }
            None if if_exists => Ok(0),
            None => Err(Error::IndexNotFound(name.to_string())),
        }
    }
}
