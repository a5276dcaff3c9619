{#- Generic test: each day's null fraction of the column is within max_abs_diff (absolute) of
    the baseline's, the training window the deployed model learned from. -#}
{% test null_fraction_vs_baseline(model, column_name, baseline, max_abs_diff=0.05, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)') }}
with

days as (
    {{ daily(model, timestamp_column, {'count_nulls': 'count(*) - count(' ~ column_name ~ ')'}) }}
),

reference as (
    {{ baseline_value(baseline, column_name, 'null_fraction') }}
),

checks as (
    select
        days.segment,
        'null_fraction' as metric,
        reference.value as expected,
        days.count_nulls::double / days.count_rows as actual,
        {{ max_abs_diff }} as threshold,
        reference.value - {{ max_abs_diff }} as lower_bound,
        reference.value + {{ max_abs_diff }} as upper_bound,
        true as is_judged
    from days
    cross join reference
),

final as (
    {{ check_result('checks') }}
)

select * from final
{% endtest %}
