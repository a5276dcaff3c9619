{#- Generic test: each day's label rate (mean of the 0/1 column) lies within
    [min_ratio, max_ratio] times the baseline's rate. A day is judged only when it is large
    enough to be: its expected number of positives (rows x baseline rate) is at least
    min_expected_positives; smaller days are recorded as not judged (bounds left null). -#}
{% test label_rate_within_bounds(model, column_name, baseline, min_ratio=0.25, max_ratio=4.0, min_expected_positives=30, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)') }}
with

days as (
    {{ daily_vs_baseline(model, column_name, baseline, 'mean', timestamp_column,
                         {'rate': 'avg(cast(' ~ column_name ~ ' as double))'}) }}
),

final as (
    {{ check_result('days', 'label_rate', actual='rate', threshold=min_ratio,
                    lower='expected * ' ~ min_ratio, upper='expected * ' ~ max_ratio,
                    judged='expected is null or count_rows * expected >= ' ~ min_expected_positives) }}
)

select * from final
{% endtest %}
