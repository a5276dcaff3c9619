{#- Generic test on an entity key: the share of each day's rows whose entity never appeared on an
    earlier day is at most max_increase above the baseline's (the share on the training window's
    last day). A changed key format (a lost prefix, a trailing space) makes every entity new, and
    with it every entity's history empty. Days before the baseline's training window ends are
    the window itself (its first days are all new by construction): they are not reported. -#}
{% test new_entity_share(model, column_name, baseline, max_increase=0.2, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)',
          meta={'fix': 'far more entities than usual were never seen before: a changed key format upstream? '
                       'Restore it and re-deliver the day'}) }}
with

window_end as (
    -- a missing baseline version has no window: every day is reported, and fails on its null expected
    select coalesce(max(train_end), date '1900-01-01') as train_end
    from {{ baseline }}
    where baseline_id = {{ selected_baseline_id(baseline) }}
),

seen as (
    select
        cast({{ timestamp_column }} as date) as day,
        min(cast({{ timestamp_column }} as date)) over (partition by {{ column_name }}) as first_day
    from {{ model }}
    where {{ column_name }} is not null
),

shares as (
    select cast(day as varchar) as segment, avg(cast(first_day = day as double)) as new_share
    from seen
    where day >= (select train_end from window_end)
    group by 1
),

days as (
    select shares.*, reference.value as expected
    from shares
    cross join ({{ baseline_value(baseline, column_name, 'new_entity_share') }}) as reference
),

final as (
    {{ check_result('days', 'new_entity_share', actual='new_share', threshold=max_increase,
                    lower='0', upper='expected + ' ~ max_increase) }}
)

select * from final
{% endtest %}
