{#-
  The landed events the online store holds for the user entity: the raw fields the user state
  reads (meta.entity_state on fct_user_state_at_transaction), exactly as they landed, one row per
  transaction as staging keeps it. The pipeline's `materialize` stage writes them into the store,
  where the server's own scored events meet them; serving stages them with the same cleanup.
-#}
with

source as (
    select * from {{ source('bank', 'transactions') }}
),

deduplicated as (
    select *
    from source
    {{ first_delivery('cast(txn_id as varchar)', 'parse_filename(filename)', 'cast(txn_ts as timestamp)') }}
),

final as (
    select
        txn_id,
        txn_ts,
        user_id,
        amount,
        country_code,
        device_type,
        parse_filename(filename) as source_file
    from deduplicated
)

select * from final
