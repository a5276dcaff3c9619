{#-
  Shared by the distribution tests below. Each of them returns one row per judged segment (a day)
  in this shape, and sets
      store_failures=true, fail_calc='count(*) filter (where not passed)'
  so dbt stores every row (the metrics, passing or not) and fails on the rows that did not pass.
  The orchestrator reads the stored rows into validation.check_results.

  `checks` must have: segment, metric, expected, actual, threshold, lower_bound, upper_bound,
  is_judged. A judged row passes when actual lies within the bounds; a missing baseline
  (expected null) or a missing actual fails, so nothing passes by accident.
-#}
{% macro check_result(checks) %}
    select
        cast(segment as varchar) as segment,
        cast(metric as varchar) as metric,
        cast(expected as double) as expected,
        cast(actual as double) as actual,
        cast(threshold as double) as threshold,
        cast(lower_bound as double) as lower_bound,
        cast(upper_bound as double) as upper_bound,
        case
            when not is_judged then true
            else coalesce(actual between lower_bound and upper_bound, false)
        end as passed
    from {{ checks }}
{% endmacro %}

{#- Per-day aggregate of a model: one row per day with count_rows and the given expressions. -#}
{% macro daily(model, timestamp_column, expressions) %}
    select
        cast(cast({{ timestamp_column }} as date) as varchar) as segment,
        count(*) as count_rows
        {%- for name, expression in expressions.items() %},
        {{ expression }} as {{ name }}
        {%- endfor %}
    from {{ model }}
    group by 1
{% endmacro %}
