{#-
  One row per transaction plus one "probe" row per user at the snapshot time, each carrying the
  user's state built from strictly earlier events only. Probes make the serving snapshot the very
  same computation as the training state, instead of a second implementation that could drift.
-#}
with

transactions as (
    select transaction_id, user_id, event_at, amount, country, device
    from {{ ref('stg_bank__transactions') }}
),

-- Snapshot time: the end of the last landed day, after every known event.
snapshot_time as (
    select date_trunc('day', max(event_at)) + interval 1 day as snapshot_at
    from transactions
),

probes as (
    select distinct
        'probe:' || transactions.user_id as state_key,
        transactions.user_id,
        snapshot_time.snapshot_at as event_at,
        cast(null as double) as amount,
        true as is_probe
    from transactions
    cross join snapshot_time
),

timeline as (
    select transaction_id as state_key, user_id, event_at, amount, false as is_probe
    from transactions
    union all
    select state_key, user_id, event_at, amount, is_probe
    from probes
),

-- Frames end just before the row's own timestamp ("exclude group"): simultaneous events do not
-- see each other and no row sees itself or its future. Probes have no amount, so count(amount)
-- counts real events only. Amounts are summed as decimal cents: exact, so the sum does not
-- depend on the order rows are combined in and every build gives the same bits.
windowed as (
    select
        state_key,
        user_id,
        event_at as state_at,
        is_probe,
        count(amount) over last_24h as txn_count_24h,
        count(amount) over last_30d as txn_count_30d,
        cast(coalesce(sum(cast(amount as decimal(18, 2))) over last_30d, 0) as double) as amount_sum_30d,
        max(case when not is_probe then event_at end) over history as last_event_at
    from timeline
    window
        last_24h as (partition by user_id order by event_at range between interval 24 hours preceding and current row exclude group),
        last_30d as (partition by user_id order by event_at range between interval 30 days preceding and current row exclude group),
        history as (partition by user_id order by event_at range between unbounded preceding and current row exclude group)
),

{#- For each list: the values of the user's transactions strictly before each timeline row. #}
{%- for column, list_name in [('country', 'known_countries'), ('device', 'known_devices')] %}
first_seen_{{ column }} as (
    select user_id, {{ column }} as category, min(event_at) as first_seen_at
    from transactions
    where {{ column }} is not null
    group by all
),

{{ list_name }} as (
    select timeline.state_key, list(first_seen.category order by first_seen.category) as {{ list_name }}
    from timeline
    inner join first_seen_{{ column }} as first_seen
        on first_seen.user_id = timeline.user_id and first_seen.first_seen_at < timeline.event_at
    group by timeline.state_key
),

{% endfor %}
final as (
    select
        windowed.state_key,
        windowed.user_id,
        windowed.state_at,
        windowed.is_probe,
        windowed.txn_count_24h,
        windowed.txn_count_30d,
        windowed.amount_sum_30d,
        windowed.last_event_at,
        coalesce(known_countries.known_countries, []::varchar[]) as known_countries,
        coalesce(known_devices.known_devices, []::varchar[]) as known_devices
    from windowed
    left join known_countries using (state_key)
    left join known_devices using (state_key)
)

select * from final
