{#- Generic test: each day's label rate (mean of the 0/1 column) lies within
    [min_ratio, max_ratio] times the baseline's rate. A day is judged only when it is large
    enough to be: its expected number of positives (rows x baseline rate) is at least
    min_expected_positives; smaller days are recorded as not judged (bounds left null). -#}
{% test label_rate_within_bounds(model, column_name, baseline, min_ratio=0.25, max_ratio=4.0, min_expected_positives=30, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)') }}
with

days as (
    {{ daily(model, timestamp_column, {'rate': 'avg(cast(' ~ column_name ~ ' as double))'}) }}
),

reference as (
    {{ baseline_value(baseline, column_name, 'mean') }}
),

judged as (
    select
        days.*,
        reference.value as expected,
        reference.value is null or days.count_rows * reference.value >= {{ min_expected_positives }} as is_judged
    from days
    cross join reference
),

checks as (
    select
        segment,
        'label_rate' as metric,
        expected,
        rate as actual,
        {{ min_ratio }} as threshold,
        case when is_judged then expected * {{ min_ratio }} end as lower_bound,
        case when is_judged then expected * {{ max_ratio }} end as upper_bound,
        is_judged
    from judged
),

final as (
    {{ check_result('checks') }}
)

select * from final
{% endtest %}
