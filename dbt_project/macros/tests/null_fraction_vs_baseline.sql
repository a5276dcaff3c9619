{#- Generic test: each day's null fraction of the column is within max_abs_diff (absolute) of
    the baseline's, the training window the deployed model learned from. -#}
{% test null_fraction_vs_baseline(model, column_name, baseline, max_abs_diff=0.05, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)') }}
with

days as (
    {{ daily_vs_baseline(model, column_name, baseline, 'null_fraction', timestamp_column,
                         {'null_fraction': '(count(*) - count(' ~ column_name ~ '))::double / count(*)'}) }}
),

final as (
    {{ check_result('days', 'null_fraction', actual='null_fraction', threshold=max_abs_diff,
                    lower='expected - ' ~ max_abs_diff, upper='expected + ' ~ max_abs_diff) }}
)

select * from final
{% endtest %}
