{#-
  The serving timestamp grammar (serving/timestamps.py, docs/serving.md#timestamps), in SQL: the
  instant a logged timestamp string names, as a naive UTC timestamp, or null when the string is
  outside the grammar or names no real time. So monitoring reads a timestamp exactly as the server
  did: offsets applied (+14:00 is 14 hours earlier in UTC), and week dates, basic format, a trailing
  NUL and the rest that Python's fromisoformat or DuckDB's cast would take refused alike.

      YYYY-MM-DD [ (T|t| ) HH:MM:SS [.1-6 digits] [Z|z|+HH:MM|-HH:MM] ]

  Servers log the canonical UTC form (2026-01-31T20:00:00.000000Z, under `timestamps_utc`), which
  this reads too; a line of an older server is read from the string it was sent. Tests hold this
  macro to the server's parser on generated strings.
-#}
{% macro utc_timestamp(text) -%}
    {%- set offset_sign = "case when regexp_extract(" ~ text ~ ", '([+-])[0-9]{2}:[0-9]{2}$', 1) = '-' then -1 else 1 end" -%}
    {%- set offset_minutes = "cast(nullif(regexp_extract(" ~ text ~ ", '[+-]([0-9]{2}):[0-9]{2}$', 1), '') as bigint) * 60"
        ~ " + cast(nullif(regexp_extract(" ~ text ~ ", '[+-][0-9]{2}:([0-9]{2})$', 1), '') as bigint)" -%}
    {%- set micros = "coalesce(cast(rpad(nullif(regexp_extract(" ~ text ~ ", '\\.([0-9]{1,6})', 1), ''), 6, '0') as bigint), 0)" -%}
    {%- set utc -%}
        (try_strptime(substr({{ text }}, 1, 10) || ' ' || coalesce(nullif(substr({{ text }}, 12, 8), ''), '00:00:00'),
                      '%Y-%m-%d %H:%M:%S')
         + to_microseconds({{ micros }})
         - coalesce(to_minutes(cast({{ offset_sign }} * ({{ offset_minutes }}) as bigint)), interval 0 minutes))
    {%- endset -%}
    case
        when regexp_full_match({{ text }}, '[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?')
            and {{ utc }} between timestamp '0001-01-01 00:00:00' and timestamp '9999-12-31 23:59:59.999999'
        then {{ utc }}
    end
{%- endmacro %}
