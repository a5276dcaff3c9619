{#-
  The landed events the online store holds for the courier and the restaurant entities: the raw
  fields their state reads (meta.entity_state on fct_courier_state_at_delivery and
  fct_restaurant_state_at_delivery), exactly as they landed, plus the landing file (the
  `materialize` stage loads the store partition by partition by it, `source_file`).
-#}
with source as (
    select * from {{ source('shop', 'deliveries') }}
),

final as (
    select
        order_ref,
        placed_ts,
        courier_id,
        restaurant_ref,
        distance_m,
        parse_filename(filename) as source_file
    from source
)

select * from final
