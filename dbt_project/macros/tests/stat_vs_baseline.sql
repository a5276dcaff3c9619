{#- Generic tests: each day's mean of the column is within max_relative_diff of the baseline's
    (relative to the baseline's value); each day's standard deviation is within a factor
    max_ratio of the baseline's (spread is skewed: a ratio bound treats x2 and /2 alike). -#}
{% test mean_vs_baseline(model, column_name, baseline, max_relative_diff=0.25, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)') }}
{{ stat_vs_baseline(model, column_name, baseline, 'mean', 'avg', max_relative_diff, timestamp_column,
                    lower='expected - abs(expected) * ' ~ max_relative_diff,
                    upper='expected + abs(expected) * ' ~ max_relative_diff) }}
{% endtest %}

{% test std_vs_baseline(model, column_name, baseline, max_ratio=2.0, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)') }}
{{ stat_vs_baseline(model, column_name, baseline, 'std', 'stddev_pop', max_ratio, timestamp_column,
                    lower='expected / ' ~ max_ratio, upper='expected * ' ~ max_ratio) }}
{% endtest %}

{#- `lower` and `upper` are SQL over `expected`, the baseline's value. -#}
{% macro stat_vs_baseline(model, column_name, baseline, metric, aggregate, threshold, timestamp_column, lower, upper) %}
with

days as (
    {{ daily_vs_baseline(model, column_name, baseline, metric, timestamp_column,
                         {'value': aggregate ~ '(cast(' ~ column_name ~ ' as double))'}) }}
),

final as (
    {{ check_result('days', metric, actual='value', threshold=threshold, lower=lower, upper=upper) }}
)

select * from final
{% endmacro %}
