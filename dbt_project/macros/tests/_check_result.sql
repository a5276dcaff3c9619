{#-
  Shared by the distribution tests in this folder. Each returns one row per segment (a day):
      segment, metric, expected, actual, threshold, lower_bound, upper_bound, passed
  and sets store_failures=true, fail_calc='count(*) filter (where not passed)', so dbt stores
  every row (the day's metrics, passing or not) and fails on the rows that did not pass. The
  orchestrator reads the stored rows into validation.check_results.

  check_result() turns `relation` (one row per segment, with a `segment` column) into that shape;
  `expected`, `actual`, `lower`, `upper` and `judged` are SQL over the relation's columns. A judged
  row passes when actual lies within the bounds: a missing baseline (null bounds) or a missing
  actual fails, so nothing passes by accident. An unjudged row is not judged: passed is null (not
  a pass, not a failure), its bounds left null. `metric_sql`, when given, is SQL naming the metric
  per row (which category a row is about, say) instead of the literal `metric`.
-#}
{% macro check_result(relation, metric, actual, threshold, lower, upper, expected='expected', judged='true',
                      metric_sql=none) %}
    select
        segment,
        metric,
        expected,
        actual,
        threshold,
        lower_bound,
        upper_bound,
        case when is_judged then coalesce(actual between lower_bound and upper_bound, false) end as passed
    from (
        select
            cast(segment as varchar) as segment,
            {{ metric_sql or ("'" ~ metric ~ "'") }} as metric,
            cast({{ expected }} as double) as expected,
            cast({{ actual }} as double) as actual,
            cast({{ threshold }} as double) as threshold,
            case when {{ judged }} then cast({{ lower }} as double) end as lower_bound,
            case when {{ judged }} then cast({{ upper }} as double) end as upper_bound,
            coalesce({{ judged }}, true) as is_judged
        from {{ relation }}
    ) as measured
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

{#- daily(), with the baseline's value of `metric` for the column as `expected`. -#}
{% macro daily_vs_baseline(model, column_name, baseline, metric, timestamp_column, expressions) %}
    select
        days.*,
        reference.value as expected
    from ({{ daily(model, timestamp_column, expressions) }}) as days
    cross join ({{ baseline_value(baseline, column_name, metric) }}) as reference
{% endmacro %}
