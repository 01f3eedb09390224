//! `from_hex(text)` (alias `unhex`): the bytes a hexadecimal string spells,
//! as DuckDB and the ADBC validation suite write binary literals
//! (`from_hex('00ff')` is `X'00FF'`); DataFusion has only `to_hex`. A null
//! gives null; an odd length or a character that is not a hex digit is an
//! error naming the value.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

#[derive(Debug, PartialEq, Eq, Hash)]
struct FromHex {
    signature: Signature,
    aliases: Vec<String>,
}

/// Registers `from_hex` / `unhex` with `ctx`.
pub fn register_hex_functions(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(FromHex {
        signature: Signature::string(1, Volatility::Immutable),
        aliases: vec!["unhex".to_string()],
    }));
}

fn decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl ScalarUDFImpl for FromHex {
    fn name(&self) -> &str {
        "from_hex"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let input = args.args[0].to_array(if scalar { 1 } else { args.number_rows })?;
        let input = arrow::compute::cast(&input, &DataType::Utf8)?;
        let text = input.as_string::<i32>();
        let mut out = BinaryBuilder::with_capacity(text.len(), 0);
        for i in 0..text.len() {
            if text.is_null(i) {
                out.append_null();
                continue;
            }
            match decode(text.value(i)) {
                Some(b) => out.append_value(b),
                None => {
                    return exec_err!(
                        "from_hex: '{}' is not hexadecimal (an even number of 0-9, a-f)",
                        text.value(i)
                    )
                }
            }
        }
        crate::query::functions::distance::columnar(Arc::new(out.finish()), scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_pairs_of_hex_digits() {
        assert_eq!(decode("00fFa1"), Some(vec![0, 255, 161]));
        assert_eq!(decode(""), Some(vec![]));
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
    }
}
