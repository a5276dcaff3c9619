with

transactions as (
    select * from {{ ref('stg_bank__transactions') }}
),

stats as (
    select * from {{ ref('fitted_transaction_stats') }}
),

vocab as (
    select * from {{ ref('fitted_category_vocab') }}
),

features as (
    {{ transaction_features('transactions', 'stats', 'vocab') }}
),

final as (
    select
        features.*,
        cast(transactions.is_fraud as integer) as is_fraud
    from features
    inner join transactions using (transaction_id)
)

select * from final
