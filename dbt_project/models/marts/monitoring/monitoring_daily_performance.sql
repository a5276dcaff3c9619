with

served as (
    select * from {{ ref('stg_serving__predictions') }}
),

-- Labels arrive late: a served transaction is labelled once its landing partition (which carries
-- the confirmed is_fraud) has been ingested, validated and published.
labels as (
    select transaction_id, cast(is_fraud as integer) as is_fraud from {{ ref('stg_bank__transactions') }}
),

labelled as (
    select
        served.event_date as day,
        served.model_id,
        served.score,
        served.predicted_label,
        labels.is_fraud
    from served
    inner join labels using (transaction_id)
),

-- ROC AUC as the Mann-Whitney statistic: average ranks, so tied scores count one half.
ranked as (
    select
        *,
        rank() over (partition by day, model_id order by score)
            + (count(*) over (partition by day, model_id, score) - 1) / 2.0 as score_rank
    from labelled
),

daily as (
    select
        day,
        model_id,
        count(*) as count_labelled,
        count(*) filter (where is_fraud = 1) as count_positive,
        count(*) filter (where is_fraud = 1 and predicted_label = 1) as count_true_positive,
        count(*) filter (where is_fraud = 0 and predicted_label = 1) as count_false_positive,
        sum(score_rank) filter (where is_fraud = 1) as positive_rank_sum
    from ranked
    group by all
),

final as (
    select
        day,
        model_id,
        count_labelled,
        count_positive,
        (positive_rank_sum - count_positive * (count_positive + 1) / 2.0)
            / nullif(count_positive * (count_labelled - count_positive), 0) as roc_auc,
        count_true_positive::double / nullif(count_true_positive + count_false_positive, 0) as precision,
        count_true_positive::double / nullif(count_positive, 0) as recall
    from daily
)

select * from final
