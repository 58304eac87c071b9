//! The Lua scripts run in Redis (admission, shared cooldown, cost
//! adjustment), and the decoding of their replies.

use std::sync::LazyLock;

use redis::Value;

use crate::connection::redis::Lua;

/// Admission: `{code, micros}`; 0 now, 1 after `micros` (reserved), 2 in a
/// cooldown for `micros`, 3 refused (next slot in `micros`).
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cool = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if cool > now then return {2, cool - now} end
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + interval * tonumber(ARGV[3])
local wait = new_tat - now - capacity
if wait > tonumber(ARGV[4]) then return {3, wait} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
if wait > 0 then return {1, wait} end
return {0, 0}
";

/// Shared cooldown: extend `KEYS[1]` to now + `ARGV[1]` µs (never shorten).
const COOL_DOWN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if now + wait > cur then
  redis.call('SET', KEYS[1], string.format('%.0f', now + wait), 'PX', math.ceil(wait / 1000) + 1)
end
return 0
";

/// Move the TAT of `KEYS[1]` by `ARGV[2]` units of `ARGV[1]` µs (a cost
/// correction; never before now), or, with `ARGV[3]` = 1, tighten it so
/// that `ARGV[2]` units remain of a capacity of `ARGV[4]` µs.
const ADJUST: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local units = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat
if ARGV[3] == '1' then
  new_tat = now + tonumber(ARGV[4]) - units * interval
  if new_tat < tat then return 0 end
else
  new_tat = tat + units * interval
end
if new_tat <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
";

pub(super) static ADMIT_SCRIPT: Lua = Lua {
    name: "admission",
    source: ADMIT,
    script: LazyLock::new(|| redis::Script::new(ADMIT)),
};
pub(super) static COOL_DOWN_SCRIPT: Lua = Lua {
    name: "cooldown",
    source: COOL_DOWN,
    script: LazyLock::new(|| redis::Script::new(COOL_DOWN)),
};
pub(super) static ADJUST_SCRIPT: Lua = Lua {
    name: "adjustment",
    source: ADJUST,
    script: LazyLock::new(|| redis::Script::new(ADJUST)),
};

/// `{code, micros}` from the admission script, or `None` for anything else.
pub(super) fn decode(value: &Value) -> Option<(i64, u64)> {
    let Value::Array(items) = value else {
        return None;
    };
    let [Value::Int(code), Value::Int(micros)] = items.as_slice() else {
        return None;
    };
    ((0..=3).contains(code) && *micros >= 0).then(|| (*code, u64::try_from(*micros).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_other_than_the_scripts_are_refused() {
        assert_eq!(
            decode(&Value::Array(vec![Value::Int(1), Value::Int(5)])),
            Some((1, 5))
        );
        assert_eq!(
            decode(&Value::Array(vec![Value::Int(9), Value::Int(5)])),
            None
        );
        assert_eq!(
            decode(&Value::Array(vec![Value::Int(0), Value::Int(-1)])),
            None
        );
        assert_eq!(decode(&Value::Nil), None);
        assert_eq!(decode(&Value::Array(vec![Value::Int(0)])), None);
    }
}
