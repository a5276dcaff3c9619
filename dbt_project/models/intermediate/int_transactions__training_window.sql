{{ config(materialized='ephemeral') }}

-- The training window: fitted statistics, vocabularies and the validation baseline see these
-- rows only, never validation, test or live data.
with

transactions as (
    select * from {{ ref('stg_bank__transactions') }}
),

final as (
    select * from transactions
    where event_at < {{ split_boundary('train_end') }}
)

select * from final
