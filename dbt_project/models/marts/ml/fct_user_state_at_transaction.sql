with

transactions as (
    select * from {{ ref('stg_bank__transactions') }}
),

-- Each transaction's state from the user's strictly earlier transactions: point in time.
user_state as (
    {{ user_state('transactions', 'transaction_id') }}
),

final as (
    select
        state_key as transaction_id,
        user_id,
        state_at,
        txn_count_24h,
        txn_count_30d,
        amount_sum_30d,
        last_event_at,
        last_same_country_at,
        last_same_device_at
    from user_state
)

select * from final
