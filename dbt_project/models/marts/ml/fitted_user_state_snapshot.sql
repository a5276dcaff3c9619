with

timeline as (
    select * from {{ ref('int_user_state__timeline') }}
),

final as (
    select
        user_id,
        state_at,
        txn_count_24h,
        txn_count_30d,
        amount_sum_30d,
        last_event_at,
        known_countries,
        known_devices
    from timeline
    where is_probe
)

select * from final
