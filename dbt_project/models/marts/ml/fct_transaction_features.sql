with

transactions as (
    select * from {{ ref('stg_bank__transactions') }}
),

user_state as (
    select * from {{ ref('fct_user_state_at_transaction') }}
),

stats as (
    select * from {{ ref('fitted_transaction_stats') }}
),

vocab as (
    select * from {{ ref('fitted_category_vocab') }}
),

-- Each transaction meets the user's state as of just before it: point-in-time correct.
transactions_with_state as (
    select
        transactions.*,
        {{ user_state_columns('user_state') }}
    from transactions
    inner join user_state using (transaction_id)
),

features as (
    {{ transaction_features('transactions_with_state', 'stats', 'vocab') }}
),

final as (
    select
        features.*,
        cast(transactions.is_fraud as integer) as is_fraud
    from features
    inner join transactions using (transaction_id)
)

select * from final
